"""Segmentor pruning configs: the full-size ones for real SemanticKITTI (mmdet3d's packaged MinkUNet34 and Cylinder3D)
and the small ones on the synthetic data. Each parses, keeps the mmdet3d base it names, and its modality patterns and
taps match the model it builds: every prunable weight in a named group, every tap a module that runs."""
import re
import sys
from pathlib import Path

import pytest

from zoo import REPO

pytest.importorskip('mmdet3d')
from mmengine.config import Config  # noqa: E402

import mmprune4u_plugin  # noqa: E402,F401
from mmprune4u_plugin.core.layers import find_prunable_layers, module_by_name  # noqa: E402
from mmprune4u_plugin.hooks import MMPrune4UHook  # noqa: E402

sys.path.insert(0, str(REPO / 'tools'))
from _launch import prune_hook_cfgs  # noqa: E402

FULL_SIZE = {  # config dir -> (mmdet3d's packaged config it inherits, model type)
    'minkunet': ('minkunet/minkunet34_w32_spconv_8xb2-laser-polar-mix-3x_semantickitti.py', 'MinkUNet'),
    'cylinder3d': ('cylinder3d/cylinder3d_4xb4-3x_semantickitti.py', 'Cylinder3D'),
}
PRUNING = sorted(p for d in [*FULL_SIZE, 'semantickitti'] for p in (REPO / 'configs' / d).glob('mmprune4u-*.py')
                 if '_semantickitti-sample' not in p.name)  # the tiny sample configs: test_hook_on_zoo_models


def _unscoped(obj):
    """A config value without the ``_scope_`` keys that inheriting through ``mmdet3d::`` adds."""
    if isinstance(obj, dict):
        return {k: _unscoped(v) for k, v in obj.items() if k != '_scope_'}
    if isinstance(obj, (list, tuple)):
        return [_unscoped(v) for v in obj]
    return obj


def _sparsity_in_name(path) -> float:
    return int(re.match(r'mmprune4u-(\d+)_', path.name).group(1)) / 100


def test_four_sparsities_of_every_segmentor():
    stems = {}
    for p in PRUNING:
        stems.setdefault(p.name.split('_', 1)[1], set()).add(_sparsity_in_name(p))
    assert len(stems) >= 4 and all(s == {0.5, 0.7, 0.8, 0.9} for s in stems.values()), stems


@pytest.mark.parametrize('path', PRUNING, ids=lambda p: p.name[:48])
def test_pruning_config_matches_its_model(path):
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(str(path))
    (hook,) = prune_hook_cfgs(cfg)
    assert hook is cfg.default_hooks.mmprune4u and hook['sparsity'] == _sparsity_in_name(path)
    assert 'mmprune4u_plugin' in cfg.custom_imports.imports and cfg.load_from is None
    args = {k: v for k, v in hook.items() if k != 'type'}
    MMPrune4UHook(**args)  # static validation
    if path.parent.name in FULL_SIZE:
        base, model_type = FULL_SIZE[path.parent.name]
        import mmdet3d
        zoo = Config.fromfile(str(Path(mmdet3d.__file__).parent / '.mim' / 'configs' / base))
        assert _unscoped(cfg.model) == _unscoped(zoo.model) and cfg.model.type == model_type  # the packaged model
        for key in ('train_dataloader', 'test_dataloader', 'test_evaluator'):
            assert _unscoped(cfg[key]) == _unscoped(zoo[key])
    model = MODELS.build(cfg.model)
    layers = find_prunable_layers(model, modalities=args['modalities'])
    groups = {lay.modality for lay in layers}
    assert groups == set(args['modalities'])  # every prunable weight is in a named group, no group is empty
    for tap in args['taps'].values():
        module_by_name(model, tap if isinstance(tap, str) else tap['module'])
    assert any(lay.name.startswith('decode_head.conv_seg') for lay in layers)  # the classifier is pruned too
