"""A replica of mmdetection3d v1.4.0's ``tools/train.py`` and ``tools/test.py`` (not in the pip package).

Same arguments, same order of config edits, same runner construction as upstream (read at tag v1.4.0):
``Config.fromfile`` (which imports ``custom_imports``), ``--ceph``, ``launcher``, ``--cfg-options``, ``work_dir``
(CLI > config > ``./work_dirs/<config name>``), ``--amp``, ``--sync_bn``, ``--auto-scale-lr``, ``--resume``, then
``Runner.from_cfg(cfg)`` unless the config sets ``runner_type`` (then ``RUNNERS.build(cfg)``); test.py sets
``load_from`` to the checkpoint and calls ``runner.test()``. Like upstream, neither calls
``register_all_modules``: the Runner's ``default_scope`` does. Only differences: ``main`` takes ``argv`` and returns
the runner (train) or the metrics (test), for in-process use.

Run as ``python tests/integration/upstream_tools.py {train,test} ARGS...`` (``torchrun`` works too). Two stand-ins
for what a GPU machine provides, off unless their environment variable is set, and outside the replica itself:

- ``MMPRUNE4U_UPSTREAM_GLOO=1``: start a gloo process group before ``main`` (mmengine 0.10.7's ``init_dist`` calls
  ``torch.cuda.set_device``; the Runner skips it when a group exists). Pair it with
  ``--cfg-options model_wrapper_cfg.device_ids=None`` (DDP rejects ``device_ids`` for CPU modules).
- ``MMPRUNE4U_UPSTREAM_CPU_AMP=1``: lift ``AmpOptimWrapper``'s "CUDA only" assertion, so ``--amp`` runs with
  bfloat16 CPU autocast (torch's GradScaler disables itself without CUDA).
"""
from __future__ import annotations

import argparse
import logging
import os
import os.path as osp
import sys

from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmdet3d.utils import replace_ceph_backend

CFG_OPTIONS_HELP = ('override some settings in the used config, the key-value pair in xxx=yyy format will be merged '
                    'into config file. A list value is written key="[a,b]" or key=a,b, nested lists/tuples as '
                    'key="[(a,b),(c,d)]" (quotes needed, no white space).')


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--ceph', action='store_true', help='Use ceph as data storage backend')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help=CFG_OPTIONS_HELP)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    # torch >= 2.0's launcher passes --local-rank, older ones --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def _finish(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _load(args) -> Config:
    """The config steps both tools share: load, ceph, launcher, --cfg-options, work_dir."""
    cfg = Config.fromfile(args.config)
    if args.ceph:
        cfg = replace_ceph_backend(cfg)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def _build_runner(cfg: Config):
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


# --------------------------------------------------------------------------------------------------- tools/train.py
def parse_train_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a 3D detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False, help='enable automatic-mixed-precision training')
    parser.add_argument('--sync_bn', choices=['none', 'torch', 'mmcv'], default='none',
                        help='convert all BatchNorm layers in the model to SyncBatchNorm (SyncBN) or '
                             'mmcv.ops.sync_bn.SyncBatchNorm (MMSyncBN) layers.')
    parser.add_argument('--auto-scale-lr', action='store_true', help='enable automatically scaling LR.')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a path from the latest checkpoint in the '
                             'work directory.')
    _add_common(parser)
    return _finish(parser, argv)


def train_main(argv=None):
    args = parse_train_args(argv)
    cfg = _load(args)

    if args.amp is True:
        optim_wrapper = cfg.optim_wrapper.type
        if optim_wrapper == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.', logger='current', level=logging.WARNING)
        else:
            assert optim_wrapper == 'OptimWrapper', (
                '`--amp` is only supported when the optimizer wrapper type is '
                f'`OptimWrapper` but got {optim_wrapper}.')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.sync_bn != 'none':
        cfg.sync_bn = args.sync_bn

    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'enable' in cfg.auto_scale_lr and 'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or "auto_scale_lr.enable" or '
                               '"auto_scale_lr.base_batch_size" in your configuration file.')

    # an explicit checkpoint wins over auto-resume
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    runner = _build_runner(cfg)
    runner.train()
    return runner


# ---------------------------------------------------------------------------------------------------- tools/test.py
def parse_test_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MMDet3D test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='directory where painted images will be saved. If specified, it will be '
                                           'automatically saved to the work_dir/timestamp/show_dir')
    parser.add_argument('--score-thr', type=float, default=0.1, help='bbox score threshold')
    parser.add_argument('--task', type=str,
                        choices=['mono_det', 'multi-view_det', 'lidar_det', 'lidar_seg', 'multi-modality_det'],
                        help='Determine the visualization method depending on the task.')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--tta', action='store_true', help='Test time augmentation')
    _add_common(parser)
    return _finish(parser, argv)


def trigger_visualization_hook(cfg: Config, args) -> Config:
    default_hooks = cfg.default_hooks
    if 'visualization' not in default_hooks:
        raise RuntimeError('VisualizationHook must be included in default_hooks.refer to usage '
                           '"visualization=dict(type=\'VisualizationHook\')"')
    hook = default_hooks['visualization']
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        hook['test_out_dir'] = args.show_dir
    tasks = ['mono_det', 'multi-view_det', 'lidar_det', 'lidar_seg', 'multi-modality_det']
    assert args.task in tasks, f"You must set '--task' in {tasks} in the command if you want to use visualization hook"
    hook['vis_task'] = args.task
    hook['score_thr'] = args.score_thr
    return cfg


def test_main(argv=None):
    args = parse_test_args(argv)
    cfg = _load(args)
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    if args.tta:  # upstream supports TTA for 3D segmentation only
        assert 'tta_model' in cfg, 'Cannot find ``tta_model`` in config.'
        assert 'tta_pipeline' in cfg, 'Cannot find ``tta_pipeline`` in config.'
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)

    runner = _build_runner(cfg)
    return runner.test()


test_main.__test__ = False  # not a pytest test, despite its name


# ------------------------------------------------------------------------------------------ CPU stand-ins (see top)
def _apply_cpu_stand_ins() -> None:
    if os.environ.get('MMPRUNE4U_UPSTREAM_GLOO') == '1':
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group(backend='gloo')
    if os.environ.get('MMPRUNE4U_UPSTREAM_CPU_AMP') == '1':
        from mmengine.optim.optimizer import amp_optimizer_wrapper
        amp_optimizer_wrapper.is_cuda_available = lambda: True


if __name__ == '__main__':
    _apply_cpu_stand_ins()
    tool, rest = sys.argv[1], sys.argv[2:]
    sys.argv = [f'tools/{tool}.py', *rest]
    {'train': train_main, 'test': test_main}[tool](rest)
