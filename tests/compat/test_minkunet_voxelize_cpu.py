"""The MinkUNet voxelisation shim against upstream's own method run with ``.cuda()`` made a no-op (the reference).

Without the shim the first test fails: upstream's ``voxelize`` calls ``.cuda()`` on a CPU build and raises.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet3d')
from mmdet3d.models.data_preprocessors import Det3DDataPreprocessor  # noqa: E402
from mmdet3d.structures import Det3DDataSample, PointData  # noqa: E402

from mmprune4u_plugin.compat import apply_cpu_shims  # noqa: E402

VOXEL_LAYER = dict(max_num_points=-1, point_cloud_range=[-100, -100, -20, 100, 100, 20], voxel_size=[0.5] * 3,
                   max_voxels=(-1, -1))


def _batch(seed: int):
    """Two clouds with duplicate voxels (points 0.1 apart at voxel size 0.5) and per-point labels."""
    gen = torch.Generator().manual_seed(seed)
    points, samples = [], []
    for n in (40, 25):
        cloud = torch.cat([torch.rand(n, 3, generator=gen) * 4 - 2, torch.rand(n, 1, generator=gen)], 1)
        points.append(cloud)
        sample = Det3DDataSample()
        sample.gt_pts_seg = PointData(pts_semantic_mask=torch.randint(0, 5, (n,), generator=gen))
        samples.append(sample)
    return points, samples


def _upstream(monkeypatch, preprocessor, points, samples):
    """Upstream's voxelize, unpatched, with ``Tensor.cuda`` an identity so it runs on CPU."""
    monkeypatch.setattr(torch.Tensor, 'cuda', lambda self, *a, **k: self)
    try:
        return Det3DDataPreprocessor.voxelize.__wrapped__(preprocessor, points, samples)
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize('batch_first', [True, False])
@pytest.mark.parametrize('training,max_voxels', [(False, None), (True, None), (True, 10)])
def test_minkunet_voxelize_matches_upstream(monkeypatch, batch_first, training, max_voxels):
    assert 'minkunet_voxelize' in apply_cpu_shims()
    pre = Det3DDataPreprocessor(voxel=True, voxel_type='minkunet', batch_first=batch_first, max_voxels=max_voxels,
                                voxel_layer=VOXEL_LAYER).train(training)
    points, ours_samples = _batch(0)
    np.random.seed(7)
    ours = pre.voxelize(points, ours_samples)
    _, ref_samples = _batch(0)
    np.random.seed(7)
    ref = _upstream(monkeypatch, pre, points, ref_samples)
    assert torch.equal(ours['voxels'], ref['voxels']) and torch.equal(ours['coors'], ref['coors'])
    assert ours['voxels'].device.type == 'cpu'
    for a, b in zip(ours_samples, ref_samples):
        assert torch.equal(a.batch_idx, b.batch_idx) and torch.equal(a.point2voxel_map, b.point2voxel_map)
        assert torch.equal(a.gt_pts_seg.voxel_semantic_mask, b.gt_pts_seg.voxel_semantic_mask)
    expected = 10 * 2 if max_voxels else len(torch.unique(ours['coors'], dim=0))
    assert len(ours['coors']) == expected
    assert len(torch.unique(ours['coors'], dim=0)) == len(ours['coors'])  # one point per occupied voxel


def test_hand_checked_voxels():
    """Three points, two in the same 0.5 m voxel: two voxels; the map sends both shared points to one voxel."""
    apply_cpu_shims()
    pre = Det3DDataPreprocessor(voxel=True, voxel_type='minkunet', batch_first=True, voxel_layer=VOXEL_LAYER).eval()
    cloud = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.1, 2.0], [1.0, 0.0, 0.0, 3.0]])
    sample = Det3DDataSample()
    sample.gt_pts_seg = PointData(pts_semantic_mask=torch.tensor([4, 4, 9]))
    out = pre.voxelize([cloud], [sample])
    assert out['coors'].tolist() == [[0, 0, 0, 0], [0, 2, 0, 0]]
    assert out['voxels'][:, 3].tolist() == [1.0, 3.0]
    assert sample.point2voxel_map.tolist() == [0, 0, 1]
    assert sample.gt_pts_seg.voxel_semantic_mask.tolist() == [4, 9]


def test_other_voxel_types_and_devices_go_to_the_original():
    from types import SimpleNamespace

    from mmprune4u_plugin.compat.minkunet_voxelize_cpu import make_dispatcher
    dispatch = make_dispatcher(lambda self, points, samples: 'original')
    assert dispatch(SimpleNamespace(voxel_type='hard'), [torch.zeros(2, 4)], []) == 'original'
    assert dispatch(SimpleNamespace(voxel_type='minkunet'), [torch.zeros(2, 4, device='meta')], []) == 'original'
    assert getattr(Det3DDataPreprocessor.voxelize, '_mmprune4u_shim', False)  # installed once by apply_cpu_shims
    assert not getattr(Det3DDataPreprocessor.voxelize.__wrapped__, '_mmprune4u_shim', False)  # wrapped once
