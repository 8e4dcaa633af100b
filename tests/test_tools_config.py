"""The recommended config form: a ``default_hooks`` entry merges into the inherited hooks, in pure mmengine config."""
import sys
from pathlib import Path

import pytest

pytest.importorskip('mmengine')
from mmengine.config import Config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
from _launch import prune_hook_cfgs  # noqa: E402

BASE = ("custom_hooks = [dict(type='DisableObjectSampleHook', disable_after_epoch=15)]\n"
        "default_hooks = dict(logger=dict(type='LoggerHook', interval=50), checkpoint=dict(type='CheckpointHook'))\n")


def _cfg(tmp_path, child: str, base: str = BASE) -> Config:
    (tmp_path / 'base.py').write_text(base)
    (tmp_path / 'child.py').write_text("_base_ = ['./base.py']\n" + child)
    return Config.fromfile(str(tmp_path / 'child.py'))


def test_default_hooks_entry_keeps_every_inherited_hook(tmp_path):
    cfg = _cfg(tmp_path, "default_hooks = dict(mmprune4u=dict(type='MMPrune4UHook', sparsity=0.7))\n")
    assert [h['type'] for h in cfg.custom_hooks] == ['DisableObjectSampleHook']
    assert list(cfg.default_hooks) == ['logger', 'checkpoint', 'mmprune4u']
    assert cfg.default_hooks.logger.interval == 50
    assert prune_hook_cfgs(cfg) == [dict(type='MMPrune4UHook', sparsity=0.7)]


def test_child_config_and_cfg_options_change_one_argument(tmp_path):
    base = BASE + "default_hooks.update(mmprune4u=dict(type='MMPrune4UHook', sparsity=0.7, allocator='lamp'))\n"
    cfg = _cfg(tmp_path, 'default_hooks = dict(mmprune4u=dict(sparsity=0.5))\n', base)
    assert prune_hook_cfgs(cfg) == [dict(type='MMPrune4UHook', sparsity=0.5, allocator='lamp')]
    cfg.merge_from_dict({'default_hooks.mmprune4u.allocator': 'global'})  # what --cfg-options does
    assert prune_hook_cfgs(cfg)[0]['allocator'] == 'global'


def test_prune_hook_cfgs_finds_custom_hooks_too_and_is_mutable(tmp_path):
    cfg = _cfg(tmp_path, "custom_hooks = [dict(type='EMAHook'), dict(type='mmdet3d.MMPrune4UHook', sparsity=0.6)]\n")
    hooks = prune_hook_cfgs(cfg)
    assert [h['sparsity'] for h in hooks] == [0.6]
    hooks[0]['sparsity'] = 0.8  # tools/prune.py edits the config through it
    assert cfg.custom_hooks[1]['sparsity'] == 0.8


def test_without_pruning_nothing_is_found(tmp_path):
    assert prune_hook_cfgs(_cfg(tmp_path, '')) == []
