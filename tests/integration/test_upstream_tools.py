"""Pruning configs under mmdet3d 1.4's own tools/train.py and tools/test.py (a faithful replica: upstream_tools.py).

Every run is a fresh process started from a directory outside the repo, as a user launches from an mmdetection3d
checkout; the plugin comes in through the configs' ``custom_imports`` only. What is checked is the checkpoint
(zeros among the prunable weights of its ``state_dict``) and the output, not the hook's own bookkeeping.
"""
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoo import REPO, SHARED_DATA, free_port, require_sample

pytest.importorskip('mmdet3d')

pytestmark = pytest.mark.heavy(seconds=250)  # the file's time on 2 cores: scheduled first (conftest)
from mmengine.config import Config  # noqa: E402

import mmprune4u_plugin  # noqa: E402,F401  (this process builds the configs' models; the runs import it themselves)

UPSTREAM = Path(__file__).with_name('upstream_tools.py')
CONFIGS = REPO / 'configs'
PP = 'pointpillars/mmprune4u-70_pointpillars_tiny_8xb1-short_kitti-sample.py'
PP_PLAIN = 'pointpillars/pointpillars_tiny_8xb1-short_kitti-sample.py'
# The launch path does not depend on the allocator: LAMP needs no curves, and one or two iterations show that the
# masks survive optimizer steps, which keeps the runs short. PointPillars runs exactly as shipped (MMPrune4U, exact
# curves, 4 iterations); test_shipped_configs_as_shipped (slow, `make test-all`) runs every config so.
LAMP = ('default_hooks.mmprune4u.allocator=lamp',)
SYNTHETIC_NUS, SYNTHETIC_SKITTI = None, 'synthetic-semantickitti'  # generated in the run's directory
CPU_CONFIGS = {  # shipped pruning config -> (sample data or a synthetic set, --cfg-options of the short run)
    PP: ('kitti-sample', ()),
    'mvxnet/mmprune4u-70_mvxnet_tiny_8xb1-short_kitti-sample.py': ('kitti-sample', LAMP + ('train_cfg.max_iters=1',)),
    'centerpoint/mmprune4u-70_centerpoint_tiny_8xb1-short_nus-sample.py':
        ('nuscenes-v1.0-mini-sample', LAMP + ('train_cfg.max_iters=1',)),
    'semantickitti/mmprune4u-70_minkunet_tiny_spconv_8xb1-short_semantickitti-sample.py':
        ('semantickitti-sample', LAMP + ('train_cfg.max_iters=2',)),
    'semantickitti/mmprune4u-70_cylinder3d_tiny_8xb1-short_semantickitti-sample.py':
        ('semantickitti-sample', LAMP + ('train_cfg.max_iters=2',)),
    'demo/mmprune4u-70_bevfusion-lite_tiny_demo_synthetic-nus.py':
        (SYNTHETIC_NUS, LAMP + ('train_cfg.max_iters=1', 'train_dataloader.dataset.times=1')),
    'semantickitti/mmprune4u-70_minkunet_small_spconv_1xb2-2k_synthetic-semantickitti.py':
        (SYNTHETIC_SKITTI, LAMP + ('train_cfg.max_iters=2',)),
    'semantickitti/mmprune4u-70_cylinder3d_small_1xb2-2k_synthetic-semantickitti.py':
        (SYNTHETIC_SKITTI, LAMP + ('train_cfg.max_iters=1',)),
    'semantickitti/mmprune4u-70_minkunet-pixelfusion_small_1xb2-2k_synthetic-semantickitti.py':
        (SYNTHETIC_SKITTI, LAMP + ('train_cfg.max_iters=2',)),
}
GPU_CONFIGS = sorted([p.relative_to(CONFIGS).as_posix() for p in (CONFIGS / 'bevfusion').glob('mmprune4u-*.py')] +
                     ['minkunet/mmprune4u-70_minkunet34_w32_spconv_8xb2-laser-polar-mix-3x_semantickitti.py',
                      'cylinder3d/mmprune4u-70_cylinder3d_4xb4-3x_semantickitti.py'])  # full size: GPU, real data


def sparsity_variants() -> dict:
    """Shipped configs that only restate another one's sparsity (``mmprune4u-50_*`` of ``mmprune4u-70_*``): name ->
    the config they inherit. Their launch path is the inherited one's."""
    out = {}
    for path in CONFIGS.rglob('mmprune4u-*.py'):
        m = re.fullmatch(r"\"\"\"[^\n]*\"\"\"\n_base_ = \['\./(mmprune4u-70_[^']+)'\]\n"
                         r"default_hooks = dict\(mmprune4u=dict\(sparsity=0\.\d+\)\)\n", path.read_text())
        if m:
            inherited = path.parent.relative_to(CONFIGS) / m.group(1)
            out[path.relative_to(CONFIGS).as_posix()] = inherited.as_posix()
    return out


def upstream(tool: str, *args, cwd: Path, launcher=(), timeout: int = 1200, **env) -> subprocess.CompletedProcess:
    """``python tools/{tool}.py ARGS`` of the replica in ``cwd``; returns the finished process (output merged)."""
    env = dict(os.environ, MMPRUNE4U_SHARED_DATA=str(SHARED_DATA), **env)
    cmd = [*(launcher or [sys.executable]), str(UPSTREAM), tool, *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def last_checkpoint(work_dir: Path) -> Path:
    return Path((work_dir / 'last_checkpoint').read_text().strip())


def checkpoint_sparsity(config: Path, checkpoint: Path) -> float:
    """Exact zeros among the prunable weights (of the config's model) in the checkpoint's ``state_dict``."""
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules

    from mmprune4u_plugin.core.layers import find_prunable_layers, get_weight
    from mmprune4u_plugin.core.masks import sparsity_report
    register_all_modules()
    model = MODELS.build(Config.fromfile(str(config), import_custom_modules=False).model)
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']
    model.load_state_dict(state)
    return sparsity_report([(lay.name, lay.modality, get_weight(model, lay))
                            for lay in find_prunable_layers(model)]).global_sparsity


def target_of(config: Path) -> float:
    return Config.fromfile(str(config), import_custom_modules=False).default_hooks.mmprune4u.sparsity


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def synthetic_data(kind, root: Path) -> None:
    """The synthetic set a config reads (relative ``data/...`` roots), tiny, under ``root``."""
    if kind == SYNTHETIC_SKITTI:  # one scan per split, a sparser LiDAR and a smaller image
        ok(subprocess.run([sys.executable, str(REPO / 'tools/create_synthetic_semantickitti.py'), '--out-dir',
                           str(root / 'data' / 'synthetic_semantickitti'), '--frames', '1', '--azimuth-steps', '256',
                           '--image-scale', '0.25', '--train-seqs', '0', '--val-seqs', '8', '--test-seqs', '11'],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600))
    else:
        synthetic_nuscenes(root)


def synthetic_nuscenes(root: Path) -> None:
    """Two train scenes and one val scene of the demo's synthetic set under ``root/data/synthetic_nuscenes``."""
    ok(subprocess.run([sys.executable, str(REPO / 'tools/create_synthetic_nuscenes.py'), '--out-dir',
                       str(root / 'data' / 'synthetic_nuscenes'), '--num-train', '2', '--num-val', '1'],
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600))


@pytest.fixture(scope='module')
def pp_run(tmp_path_factory):
    """The shipped PointPillars pruning config through upstream train.py, as shipped: (work_dir, output)."""
    require_sample('kitti-sample')
    cwd = tmp_path_factory.mktemp('pp')
    out = ok(upstream('train', CONFIGS / PP, '--work-dir', cwd / 'w', cwd=cwd))
    return cwd / 'w', out


def test_every_shipped_pruning_config_is_covered():
    shipped = {p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob('mmprune4u-*.py')}
    variants = sparsity_variants()
    assert shipped == set(CPU_CONFIGS) | set(GPU_CONFIGS) | set(variants) and len(GPU_CONFIGS) == 10
    assert set(variants.values()) <= set(CPU_CONFIGS) | set(GPU_CONFIGS)
    assert len(variants) >= 12 and all(v.startswith(('semantickitti/', 'minkunet/', 'cylinder3d/')) for v in variants)


@pytest.mark.parametrize('config', sorted(CPU_CONFIGS))
def test_shipped_config_prunes_under_upstream_train(config, tmp_path, request):
    data, options = CPU_CONFIGS[config]
    if config == PP:
        work_dir, out = request.getfixturevalue('pp_run')
    else:
        if data in (SYNTHETIC_NUS, SYNTHETIC_SKITTI):
            synthetic_data(data, tmp_path)
        else:
            require_sample(data)
        work_dir = tmp_path / 'w'
        out = ok(upstream('train', CONFIGS / config, '--work-dir', work_dir, '--cfg-options', *options, cwd=tmp_path))
    assert re.search(r'\(LOW\s*\) MMPrune4UHook', out)  # in the Runner's hook table
    sparsity = checkpoint_sparsity(CONFIGS / config, last_checkpoint(work_dir))
    assert sparsity == pytest.approx(target_of(CONFIGS / config), abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize('config', sorted(set(CPU_CONFIGS) - {PP}))
def test_shipped_configs_as_shipped(config, tmp_path):
    """Each config with its own allocator, estimator and schedule (MVX-Net's exact curves take many minutes)."""
    data, options = CPU_CONFIGS[config]
    synthetic_data(data, tmp_path) if data in (SYNTHETIC_NUS, SYNTHETIC_SKITTI) else require_sample(data)
    # the demo: 1 iteration, 2 scenes; the synthetic SemanticKITTI ones: their short runs
    options = ['--cfg-options', *options[len(LAMP):]] if data in (SYNTHETIC_NUS, SYNTHETIC_SKITTI) else []
    out = ok(upstream('train', CONFIGS / config, '--work-dir', tmp_path / 'w', *options, cwd=tmp_path))
    assert 'MMPrune4U round 1/1' in out
    sparsity = checkpoint_sparsity(CONFIGS / config, last_checkpoint(tmp_path / 'w'))
    assert sparsity == pytest.approx(target_of(CONFIGS / config), abs=1e-3)


def kitti_ann_with_categories(tmp_path: Path) -> Path:
    """KittiMetric needs what the sample pkl (mmdet3d's demo data) lacks: categories and sample_idx."""
    info = pickle.loads((require_sample('kitti-sample') / '000008.pkl').read_bytes())
    info['metainfo']['categories'] = {'Pedestrian': 0, 'Cyclist': 1, 'Car': 2, 'DontCare': -1}
    info['data_list'][0]['sample_idx'] = info['data_list'][0]['sample_id']
    path = tmp_path / 'kitti_infos_with_categories.pkl'
    path.write_bytes(pickle.dumps(info))
    return path


def test_upstream_test_reports_the_sparsity_it_evaluated(tmp_path, pp_run):
    """tools/test.py PLAIN_CONFIG pruned.pth: the plain config's SparsityReportHook logs and returns the sparsity."""
    work_dir, _ = pp_run
    checkpoint = last_checkpoint(work_dir)
    expected = checkpoint_sparsity(CONFIGS / PP_PLAIN, checkpoint)
    out = ok(upstream('test', CONFIGS / PP_PLAIN, checkpoint, '--work-dir', tmp_path / 't', '--cfg-options',
                      f'test_evaluator.ann_file={kitti_ann_with_categories(tmp_path)}', cwd=tmp_path))
    assert f'prunable-weight sparsity of the tested model: {expected:.4f}' in out
    assert f'mmprune4u/sparsity: {expected:.4f}' in out  # among the metrics of the LoggerHook's line
    assert 'Kitti metric' in out and abs(expected - 0.7) <= 1e-3


def test_cfg_options_and_resume(tmp_path):
    """--cfg-options reaches the hook; --resume continues with the checkpoint's masks, without pruning again."""
    require_sample('kitti-sample')
    work_dir, options = tmp_path / 'w', ['default_hooks.mmprune4u.sparsity=0.5', *LAMP]
    first = ok(upstream('train', CONFIGS / PP, '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_iters=2',
                        *options, cwd=tmp_path))
    assert 'MMPrune4U round 1/1' in first and last_checkpoint(work_dir).name == 'iter_2.pth'
    resumed = ok(upstream('train', CONFIGS / PP, '--work-dir', work_dir, '--resume', '--cfg-options', *options,
                          cwd=tmp_path))
    assert 'resumed epoch: 0, iter: 2' in resumed
    assert 'masks restored from checkpoint' in resumed and 'MMPrune4U round' not in resumed
    assert last_checkpoint(work_dir).name == 'iter_4.pth'
    assert checkpoint_sparsity(CONFIGS / PP, work_dir / 'iter_4.pth') == pytest.approx(0.5, abs=1e-3)


def test_amp(tmp_path):
    """--amp: on CPU mmengine's AmpOptimWrapper refuses before training; with that check lifted (bfloat16 CPU
    autocast, the stand-in for a GPU) the pruned checkpoint holds its target."""
    require_sample('kitti-sample')
    options = ['--cfg-options', 'train_cfg.max_iters=2', *LAMP]
    if not torch.cuda.is_available():
        refused = upstream('train', CONFIGS / PP, '--work-dir', tmp_path / 'cpu', '--amp', *options, cwd=tmp_path)
        assert refused.returncode != 0 and 'only available training on gpu' in refused.stdout
        assert 'Epoch(train)' not in refused.stdout
    out = ok(upstream('train', CONFIGS / PP, '--work-dir', tmp_path / 'w', '--amp', *options, cwd=tmp_path,
                      MMPRUNE4U_UPSTREAM_CPU_AMP='1'))
    assert 'AmpOptimWrapper' in out and 'Epoch(train)' in out
    assert checkpoint_sparsity(CONFIGS / PP, last_checkpoint(tmp_path / 'w')) == pytest.approx(0.7, abs=1e-3)


def test_runner_type_builds_a_registered_runner_that_prunes(tmp_path):
    """``runner_type`` makes train.py use RUNNERS.build: a user's Runner subclass still gets the hook."""
    require_sample('kitti-sample')
    (tmp_path / 'user_runner.py').write_text(
        'from mmengine.registry import RUNNERS\nfrom mmengine.runner import Runner\n\n\n'
        '@RUNNERS.register_module()\nclass UserRunner(Runner):\n'
        '    def train(self):\n        self.logger.info("UserRunner.train")\n        return super().train()\n')
    config = write_config(tmp_path / 'cfg.py', f"_base_ = ['{CONFIGS / PP}']\nrunner_type = 'UserRunner'\n"
                          "custom_imports = dict(imports=['mmprune4u_plugin', 'user_runner'])\n")
    out = ok(upstream('train', config, '--work-dir', tmp_path / 'w', '--cfg-options', 'train_cfg.max_iters=2',
                      *LAMP, cwd=tmp_path, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH',
                                                                                                       '')])))
    assert 'UserRunner.train' in out
    assert checkpoint_sparsity(config, last_checkpoint(tmp_path / 'w')) == pytest.approx(0.7, abs=1e-3)


def test_custom_hooks_written_directly(tmp_path):
    require_sample('kitti-sample')
    config = write_config(tmp_path / 'cfg.py', f"_base_ = ['{CONFIGS / PP_PLAIN}']\n"
                          "custom_hooks = [dict(type='MMPrune4UHook', sparsity=0.6, allocator='lamp')]\n")
    ok(upstream('train', config, '--work-dir', tmp_path / 'w', '--cfg-options', 'train_cfg.max_iters=2',
                cwd=tmp_path))
    assert checkpoint_sparsity(config, last_checkpoint(tmp_path / 'w')) == pytest.approx(0.6, abs=1e-3)


def test_legacy_key_fails_before_training_with_what_to_write(tmp_path):
    require_sample('kitti-sample')
    config = write_config(tmp_path / 'cfg.py', f"_base_ = ['{CONFIGS / PP_PLAIN}']\n"
                          "mmprune4u_hook = dict(sparsity=0.7, allocator='lamp')\n")
    proc = upstream('train', config, '--work-dir', tmp_path / 'w', cwd=tmp_path)
    assert proc.returncode != 0
    assert ("Write instead: default_hooks = dict(mmprune4u=dict(type='MMPrune4UHook', sparsity=0.7, "
            "allocator='lamp'))") in proc.stdout
    assert 'Epoch(train)' not in proc.stdout and not list((tmp_path / 'w').glob('*.pth'))


def test_without_the_plugin_import_the_recommended_form_fails(tmp_path):
    """No ``custom_imports``: the ``default_hooks`` entry cannot be built, so the run stops instead of not pruning."""
    require_sample('kitti-sample')
    config = write_config(tmp_path / 'cfg.py', f"_base_ = ['{CONFIGS / PP_PLAIN}']\n"
                          "custom_imports = dict(_delete_=True, imports=[])\n"
                          "default_hooks = dict(_delete_=True, mmprune4u=dict(type='MMPrune4UHook', sparsity=0.7))\n")
    proc = upstream('train', config, '--work-dir', tmp_path / 'w', cwd=tmp_path)
    assert proc.returncode != 0 and 'MMPrune4UHook is not in the' in proc.stdout
    assert 'Epoch(train)' not in proc.stdout


def test_torchrun_two_ranks(tmp_path):
    """``torchrun --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch`` (gloo stands in for NCCL)."""
    require_sample('kitti-sample')
    torchrun = Path(sys.executable).with_name('torchrun')
    torchrun = str(torchrun) if torchrun.exists() else shutil.which('torchrun')
    out = ok(upstream('train', CONFIGS / PP, '--launcher', 'pytorch', '--work-dir', tmp_path / 'w', '--cfg-options',
                      'train_cfg.max_iters=2', *LAMP, 'model_wrapper_cfg.device_ids=None',
                      'model_wrapper_cfg.broadcast_buffers=False', cwd=tmp_path,
                      launcher=[torchrun, '--nproc_per_node=2', f'--master_port={free_port()}'],
                      MMPRUNE4U_UPSTREAM_GLOO='1'))
    assert 'Distributed training: True' in out
    assert checkpoint_sparsity(CONFIGS / PP, last_checkpoint(tmp_path / 'w')) == pytest.approx(0.7, abs=1e-3)
