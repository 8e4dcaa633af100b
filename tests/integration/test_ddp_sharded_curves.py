"""Sharded curve measurement under 2 gloo ranks equals a single-process run: same calibration batches, same curves,
same masks (tools/train.py with ``--launcher pytorch`` under torchrun, as in DESIGN §4)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo import REPO, SHARED_DATA, free_port, require_sample

pytest.importorskip('mmdet3d')

NEAR = [0, -20, -3, 35, 20, 1]
FULL = [0, -39.68, -3, 69.12, 39.68, 1]


def _config(work: Path) -> Path:
    """PointPillars tiny; calibration on 2 different samples (the KITTI frame with a full and a near point range),
    so a rank-sharded calibration loader would give each rank a different batch."""
    def frame(rng):
        pipeline = [dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4),
                    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
                    dict(type='PointsRangeFilter', point_cloud_range=rng),
                    dict(type='ObjectRangeFilter', point_cloud_range=rng),
                    dict(type='Pack3DDetInputs', keys=['points', 'gt_bboxes_3d', 'gt_labels_3d'])]
        return dict(type='KittiDataset', data_root=f'{SHARED_DATA}/kitti-sample/', ann_file='000008.pkl',
                    data_prefix=dict(pts='', img=''), pipeline=pipeline, modality=dict(use_lidar=True),
                    metainfo=dict(classes=['Pedestrian', 'Cyclist', 'Car']), box_type_3d='LiDAR')
    calib = dict(batch_size=1, num_workers=0, dataset=dict(type='ConcatDataset', datasets=[frame(FULL), frame(NEAR)]))
    hook = dict(type='MMPrune4UHook', sparsity=0.7, grid=[0.0, 0.5, 0.8, 0.95], calib_batches=2,
                calib_dataloader=calib, curve_cache=f'{work}/curves.npz', report=False)
    work.mkdir(parents=True)
    cfg = work.with_suffix('.py')
    cfg.write_text(f"_base_ = ['{REPO / 'configs/pointpillars/pointpillars_tiny_8xb1-short_kitti-sample.py'}']\n"
                   "randomness = dict(seed=0)\n"
                   "train_cfg = dict(max_iters=1)\n"
                   f"custom_hooks = [{hook!r}]\n")
    return cfg


def _train(work: Path, ranks: int) -> str:
    torchrun = Path(sys.executable).with_name('torchrun')
    if not torchrun.exists():
        torchrun = shutil.which('torchrun')
    cfg = _config(work)
    cmd = [sys.executable, 'tools/train.py', str(cfg), '--work-dir', str(work)] if ranks == 1 else \
        [str(torchrun), f'--nproc_per_node={ranks}', f'--master_port={free_port()}', 'tools/train.py', str(cfg),
         '--launcher', 'pytorch', '--work-dir', str(work)]
    env = dict(os.environ, OMP_NUM_THREADS='1')  # torchrun's default per rank; the same for the single process
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow  # two training runs (~1-2 min on 2 cores); the 2-rank core check is in tests/hooks
def test_two_gloo_ranks_sharded_curves_equal_single_process(tmp_path):
    require_sample('kitti-sample')
    from mmprune4u_plugin.core.curves import DistortionCurves
    single_log = _train(tmp_path / 'single', 1)
    ddp_log = _train(tmp_path / 'ddp', 2)
    assert 'Distributed training: True' in ddp_log and 'on 2 rank(s)' in ddp_log and 'on 1 rank(s)' in single_log

    def evidence(run, name, rank):
        return (tmp_path / run / 'mmprune4u' / f'{name}_rank{rank}.txt').read_text()
    # the same calibration batches on every rank as in one process (rank-sharded they differ: 2 distinct samples)
    calib = {evidence('single', 'calib_fingerprint', 0), evidence('ddp', 'calib_fingerprint', 0),
             evidence('ddp', 'calib_fingerprint', 1)}
    assert len(calib) == 1
    masks = {evidence('single', 'mask_digest', 0), evidence('ddp', 'mask_digest', 0),
             evidence('ddp', 'mask_digest', 1)}
    assert len(masks) == 1
    single = DistortionCurves.load(tmp_path / 'single' / 'curves_round1.npz')
    sharded = DistortionCurves.load(tmp_path / 'ddp' / 'curves_round1.npz')
    assert sharded.source == single.source  # same weights, buffers, batches and settings
    assert sharded.names == single.names and sharded.stats['ranks'] == 2 and single.stats['ranks'] == 1
    np.testing.assert_allclose(sharded.task, single.task, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sharded.local, single.local, rtol=1e-9, atol=1e-12)
    for key in ('leaf_forwards', 'plain_leaf_forwards'):  # the split work adds up to one process's
        assert sharded.stats[key] == single.stats[key]
