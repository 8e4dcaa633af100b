"""Two CPU ranks (gloo) through mmengine's launcher: both ranks hold identical masks and reach the target."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo import REPO, free_port, require_sample

pytest.importorskip('mmdet3d')


def test_two_gloo_ranks_identical_masks(tmp_path):
    require_sample('kitti-sample')
    torchrun = Path(sys.executable).with_name('torchrun')
    if not torchrun.exists():
        torchrun = shutil.which('torchrun')
    cfg = tmp_path / 'ddp.py'
    cfg.write_text(f"_base_ = ['{REPO / 'configs/pointpillars/pointpillars_tiny_8xb1-short_kitti-sample.py'}']\n"
                   "custom_hooks = [dict(type='MMPrune4UHook', sparsity=0.7, grid=[0.0, 0.5, 0.8, 0.95], "
                   "calib_batches=1)]\n")
    work = tmp_path / 'work'
    proc = subprocess.run([str(torchrun), '--nproc_per_node=2', f'--master_port={free_port()}', 'tools/train.py',
                           str(cfg), '--launcher', 'pytorch', '--work-dir', str(work)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'Distributed training: True' in proc.stdout + proc.stderr
    digests = [(work / 'mmprune4u' / f'mask_digest_rank{r}.txt').read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    ckpt = torch.load(work / 'iter_4.pth', map_location='cpu', weights_only=False)
    masks = ckpt['mmprune4u']['masks']['layers']
    kept = sum(int(np.unpackbits(e['mask'].numpy())[:torch.Size(e['shape']).numel()].sum()) for e in masks)
    total = sum(torch.Size(e['shape']).numel() for e in masks)
    assert abs(1 - kept / total - 0.7) <= 1e-4
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])
