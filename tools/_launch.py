"""Shared by tools/train.py and tools/test.py: config loading and CPU-friendly distributed launch."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def common_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--cfg-options', nargs='+', action=_DictAction, default={},
                        help='override config keys, e.g. key=value a.b=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


class _DictAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        from mmengine.config import DictAction
        DictAction(self.option_strings, self.dest)(parser, namespace, values, option_string)


def load_config(args: argparse.Namespace):
    """Config with CLI overrides, work_dir and launcher applied; prepares gloo DDP when CUDA is absent."""
    import torch
    from mmengine.config import Config

    import mmprune4u_plugin  # noqa: F401  (registers the plugin, applies CPU shims)
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = str(Path('work_dirs') / Path(args.config).stem)
    if args.launcher != 'none' and not torch.cuda.is_available():
        # mmengine 0.10.7's init_dist calls torch.cuda.set_device and its DDP wrapper passes device_ids: both fail
        # on CPU. Initialise gloo first (the Runner then skips init_dist) and wrap without device_ids.
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group(backend='gloo')
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False)
        cfg.env_cfg = dict(cfg.get('env_cfg', {}), dist_cfg=dict(backend='gloo'))
    return cfg


def prune_hook_cfgs(cfg) -> list:
    """The MMPrune4UHook entries of ``cfg`` (in ``default_hooks`` and ``custom_hooks``), as mutable config dicts."""
    hooks = list((cfg.get('default_hooks') or {}).values()) + list(cfg.get('custom_hooks') or [])
    return [h for h in hooks if isinstance(h, dict) and str(h.get('type', '')).split('.')[-1] == 'MMPrune4UHook']


def build_runner(cfg):
    """As mmdet3d's tools/train.py and tools/test.py do; the plugin's runner guard checks the hooks on the way."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
