"""tools/_launch.py: the `mmprune4u_hook` key appends to the inherited custom_hooks instead of replacing them."""
import sys
from pathlib import Path

import pytest

pytest.importorskip('mmengine')
from mmengine.config import Config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
from _launch import append_prune_hook  # noqa: E402


def _cfg(tmp_path, child: str) -> Config:
    (tmp_path / 'base.py').write_text("custom_hooks = [dict(type='DisableObjectSampleHook', disable_after_epoch=15)]\n")
    (tmp_path / 'child.py').write_text("_base_ = ['./base.py']\n" + child)
    return Config.fromfile(str(tmp_path / 'child.py'))


def test_base_hooks_are_kept(tmp_path):
    cfg = _cfg(tmp_path, "mmprune4u_hook = dict(sparsity=0.7, allocator='lamp')\n")
    append_prune_hook(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == ['DisableObjectSampleHook', 'MMPrune4UHook']
    assert cfg.custom_hooks[1]['sparsity'] == 0.7 and 'mmprune4u_hook' not in cfg


def test_both_forms_at_once_is_an_error(tmp_path):
    cfg = _cfg(tmp_path, "mmprune4u_hook = dict(sparsity=0.7)\n"
                         "custom_hooks = [dict(type='MMPrune4UHook', sparsity=0.5)]\n")
    with pytest.raises(ValueError, match='both `mmprune4u_hook` and an MMPrune4UHook'):
        append_prune_hook(cfg)


def test_without_the_key_nothing_changes(tmp_path):
    cfg = _cfg(tmp_path, '')
    append_prune_hook(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == ['DisableObjectSampleHook']
