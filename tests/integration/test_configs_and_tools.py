"""The shipped configs parse and build their hook; tools/prune.py + tools/export_sparse.py round-trip."""
import re
import subprocess
import sys

import pytest
import torch

from zoo import REPO, require_sample

pytest.importorskip('mmdet3d')
from mmengine.config import Config  # noqa: E402

import mmprune4u_plugin  # noqa: E402,F401
from mmprune4u_plugin.hooks import MMPrune4UHook  # noqa: E402

sys.path.insert(0, str(REPO / 'tools'))
from _launch import prune_hook_cfgs  # noqa: E402

CONFIGS = sorted(p.relative_to(REPO / 'configs').as_posix() for p in (REPO / 'configs').rglob('*.py')
                 if not {'_base_', 'bevfusion', 'benchmark'} & set(p.parts))
# bevfusion/: test_bevfusion_configs; benchmark/: plans of tools/benchmark.py, not model configs


@pytest.mark.parametrize('config', CONFIGS)
def test_config_parses_and_hook_validates(config):
    cfg = Config.fromfile(str(REPO / 'configs' / config))
    assert cfg.model.type and cfg.load_from is None and 'mmprune4u_hook' not in cfg
    hooks = prune_hook_cfgs(cfg)
    for hook in hooks:
        MMPrune4UHook(**{k: v for k, v in hook.items() if k != 'type'})
    if config.split('/')[-1].startswith('mmprune4u'):  # the form mmdet3d's own tools/train.py registers
        assert hooks == [cfg.default_hooks.mmprune4u]
    else:
        assert hooks == []


def test_prune_then_export_sparse(tmp_path):
    require_sample('kitti-sample')
    cfg = 'configs/pointpillars/mmprune4u-70_pointpillars_tiny_8xb1-short_kitti-sample.py'
    run = dict(cwd=REPO, capture_output=True, text=True, timeout=600)
    prune = subprocess.run([sys.executable, 'tools/prune.py', cfg, '--work-dir', str(tmp_path), '--allocator', 'rd'],
                           **run)
    assert prune.returncode == 0, prune.stderr[-3000:]
    ckpt = torch.load(tmp_path / 'pruned.pth', map_location='cpu', weights_only=False)
    assert ckpt['mmprune4u']['rounds_done'] == 1 and (tmp_path / 'mmprune4u' / 'round_1' / 'layers.txt').is_file()
    export = subprocess.run([sys.executable, 'tools/export_sparse.py', str(tmp_path / 'pruned.pth'), '--check'],
                            **run)
    assert export.returncode == 0, export.stderr[-3000:]
    assert 'reloaded weights identical: True' in export.stdout
    dense_mb, sparse_mb = (float(re.search(r'([0-9.]+) MB', line).group(1)) for line in export.stdout.splitlines()[:2])
    assert sparse_mb < 0.5 * dense_mb
