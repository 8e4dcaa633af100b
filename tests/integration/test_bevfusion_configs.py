"""configs/bevfusion: parse (against stub base configs standing in for an mmdetection3d checkout), keep the base's
hooks, their modality patterns and taps match the BEVFusion-style model's modules (same names as BEVFusion), and
the Runner that mmdet3d's tools/train.py builds from them holds the pruning hook (BEVFusion itself needs an
mmdetection3d checkout and CUDA, so the runner is built around BEVFusion-Lite and not trained)."""
import sys

import pytest

from zoo import REPO

pytest.importorskip('mmdet3d')
from mmengine.config import Config  # noqa: E402

import mmprune4u_plugin  # noqa: E402,F401
from mmprune4u_plugin.core.layers import find_prunable_layers, module_by_name  # noqa: E402
from mmprune4u_plugin.hooks import MMPrune4UHook  # noqa: E402

sys.path.insert(0, str(REPO / 'tools'))
from _launch import prune_hook_cfgs  # noqa: E402

CONFIGS = sorted((REPO / 'configs' / 'bevfusion').glob('mmprune4u-*.py'))


@pytest.fixture
def stub_checkout(tmp_path, monkeypatch):
    cfg_dir = tmp_path / 'projects' / 'BEVFusion' / 'configs'
    cfg_dir.mkdir(parents=True)
    for name, hooks in (('bevfusion_lidar-cam_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py', '[]'),
                        ('bevfusion_lidar_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py',
                         "[dict(type='DisableObjectSampleHook', disable_after_epoch=15)]")):
        (cfg_dir / name).write_text("_base_ = ['mmdet3d::_base_/default_runtime.py']\n"
                                    f"model = dict(type='BEVFusion')\ncustom_hooks = {hooks}\n")
    package = tmp_path / 'projects' / 'BEVFusion' / 'bevfusion'  # the configs' custom_imports, as in the checkout
    package.mkdir()
    (package / '__init__.py').write_text('')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv('MMDET3D_ROOT', str(tmp_path))


def test_eight_configs():
    assert len(CONFIGS) == 8


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name[:40])
def test_config_parses_keeps_base_hooks_and_matches_model(path, stub_checkout):
    cfg = Config.fromfile(str(path))
    (hook,) = prune_hook_cfgs(cfg)
    assert hook is cfg.default_hooks.mmprune4u and hook['type'] == 'MMPrune4UHook'
    assert cfg.custom_imports.imports == ['projects.BEVFusion.bevfusion', 'mmprune4u_plugin']  # upstream CLIs import it
    assert hook['sparsity'] == int(path.name.split('-')[1].split('_')[0]) / 100
    assert [h['type'] for h in cfg.custom_hooks] == (['DisableObjectSampleHook'] if '_lidar_' in path.name else [])
    args = {k: v for k, v in hook.items() if k != 'type'}
    MMPrune4UHook(**args)  # static validation
    # patterns and taps against the BEVFusion-style model (LiDAR-camera tiny)
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules
    register_all_modules()
    model_cfg = Config.fromfile(str(REPO / 'configs/bevfusion_lite/_base_/bevfusion-lite_model-tiny.py')).model
    model = MODELS.build(model_cfg)
    layers = find_prunable_layers(model, modalities=args['modalities'])
    assert {lay.modality for lay in layers} >= set(args['modalities'])
    for tap in args['taps'].values():
        module_by_name(model, tap)


@pytest.mark.parametrize('path', CONFIGS[:2], ids=lambda p: p.name[:40])
def test_runner_from_cfg_holds_the_hook(path, stub_checkout, tmp_path):
    """What tools/train.py builds (Runner.from_cfg), with BEVFusion-Lite standing in for BEVFusion; no training."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(str(path))
    cfg.model = Config.fromfile(str(REPO / 'configs/bevfusion_lite/_base_/bevfusion-lite_model-tiny.py')).model
    cfg.work_dir, cfg.launcher = str(tmp_path), 'none'
    runner = Runner.from_cfg(cfg)
    names = [type(h).__name__ for h in runner.hooks]
    assert names.count('MMPrune4UHook') == 1
    assert ('DisableObjectSampleHook' in names) == ('_lidar_' in path.name)
    hook = next(h for h in runner.hooks if type(h).__name__ == 'MMPrune4UHook')
    assert hook.args['sparsity'] == cfg.default_hooks.mmprune4u.sparsity
