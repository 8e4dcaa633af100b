"""configs/bevfusion: parse (against stub base configs standing in for an mmdetection3d checkout), keep the base's
hooks, and their modality patterns and taps match the BEVFusion-style model's modules (same names as BEVFusion)."""
import sys

import pytest

from zoo import REPO

pytest.importorskip('mmdet3d')
from mmengine.config import Config  # noqa: E402

import mmprune4u_plugin  # noqa: E402,F401
from mmprune4u_plugin.core.layers import find_prunable_layers, module_by_name  # noqa: E402
from mmprune4u_plugin.hooks import MMPrune4UHook  # noqa: E402

sys.path.insert(0, str(REPO / 'tools'))
from _launch import append_prune_hook  # noqa: E402

CONFIGS = sorted((REPO / 'configs' / 'bevfusion').glob('mmprune4u-*.py'))


@pytest.fixture
def stub_checkout(tmp_path, monkeypatch):
    cfg_dir = tmp_path / 'projects' / 'BEVFusion' / 'configs'
    cfg_dir.mkdir(parents=True)
    for name, hooks in (('bevfusion_lidar-cam_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py', '[]'),
                        ('bevfusion_lidar_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py',
                         "[dict(type='DisableObjectSampleHook', disable_after_epoch=15)]")):
        (cfg_dir / name).write_text(f"model = dict(type='BEVFusion')\ncustom_hooks = {hooks}\n")
    monkeypatch.setenv('MMDET3D_ROOT', str(tmp_path))


def test_eight_configs():
    assert len(CONFIGS) == 8


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name[:40])
def test_config_parses_keeps_base_hooks_and_matches_model(path, stub_checkout):
    cfg = Config.fromfile(str(path))
    append_prune_hook(cfg)
    hooks = cfg.custom_hooks
    assert hooks[-1]['type'] == 'MMPrune4UHook'
    assert hooks[-1]['sparsity'] == int(path.name.split('-')[1].split('_')[0]) / 100
    if '_lidar_' in path.name:
        assert hooks[0]['type'] == 'DisableObjectSampleHook'
    args = {k: v for k, v in hooks[-1].items() if k != 'type'}
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
