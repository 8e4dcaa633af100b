"""bev_pool: exact sums against a plain loop, dropped points, gradients, and the BEV layout of mmdet3d's LiDAR maps."""
from __future__ import annotations

import math

import pytest
import torch

from mmprune4u_plugin.models.bev_pool import bev_pool, grid_size

BOUNDS = dict(xbound=(-4.0, 4.0, 1.0), ybound=(-3.0, 3.0, 0.5), zbound=(-2.0, 2.0, 4.0))


def loop_bev_pool(coords, feats, *, xbound, ybound, zbound):
    """The definition, one point at a time."""
    nx, ny, nz = grid_size(xbound), grid_size(ybound), grid_size(zbound)
    channels = feats.shape[-1]
    out = torch.zeros(coords.shape[0], nz * channels, ny, nx, dtype=feats.dtype)
    for b in range(coords.shape[0]):
        for point, feat in zip(coords[b].reshape(-1, 3).tolist(), feats[b].reshape(-1, channels)):
            cell = [math.floor((c - bound[0]) / bound[2]) for c, bound in zip(point, (xbound, ybound, zbound))]
            if all(0 <= i < n for i, n in zip(cell, (nx, ny, nz))):
                ix, iy, iz = cell
                out[b, iz * channels:(iz + 1) * channels, iy, ix] += feat
    return out


def random_points(shape, bounds, generator, margin=0.25):
    """Points over the grid and ``margin`` beyond it on each side (so some are dropped); float64."""
    axes = []
    for low, high, _ in (bounds['xbound'], bounds['ybound'], bounds['zbound']):
        span = high - low
        axes.append(torch.rand(shape, generator=generator, dtype=torch.float64) * span * (1 + 2 * margin)
                    + low - margin * span)
    return torch.stack(axes, dim=-1)


@pytest.mark.parametrize('shape, zbound', [
    ((1, 500), BOUNDS['zbound']),
    ((2, 2, 3, 4, 5), BOUNDS['zbound']),        # (B, N, D, H, W): frustum-shaped
    ((3, 200), (-2.0, 2.0, 1.0)),               # four z cells folded into channels
])
def test_matches_loop_exactly(shape, zbound):
    gen = torch.Generator().manual_seed(0)
    bounds = dict(BOUNDS, zbound=zbound)
    coords = random_points(shape, bounds, gen)
    feats = torch.randint(-8, 9, shape + (3, ), generator=gen).to(torch.float64)  # integer sums: order-exact
    out = bev_pool(coords, feats, **bounds)
    assert out.shape == (shape[0], 3 * grid_size(zbound), 12, 8)
    assert torch.equal(out, loop_bev_pool(coords, feats, **bounds))


def test_points_outside_are_dropped_and_cells_half_open():
    coords = torch.tensor([[[-4.0, -3.0, 0.0],     # lowest corner: cell (0, 0)
                            [3.999, 2.999, 0.0],   # last cell
                            [4.0, 0.0, 0.0],       # x == max: outside
                            [-4.001, 0.0, 0.0],    # below min
                            [0.0, 0.0, 2.0],       # z == max: outside
                            [0.0, 0.0, -2.5]]])    # z below
    out = bev_pool(coords, torch.ones(1, 6, 1), **BOUNDS)
    assert out.sum() == 2
    assert out[0, 0, 0, 0] == 1 and out[0, 0, 11, 7] == 1


def test_gradient_is_the_output_gradient_at_each_points_cell():
    gen = torch.Generator().manual_seed(1)
    coords = random_points((2, 300), BOUNDS, gen)
    feats = torch.randn(2, 300, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(2, 4, 12, 8, dtype=torch.float64, generator=gen)
    (bev_pool(coords, feats, **BOUNDS) * weight).sum().backward()
    ix = torch.floor((coords[..., 0] + 4.0) / 1.0).long()
    iy = torch.floor((coords[..., 1] + 3.0) / 0.5).long()
    inside = (ix >= 0) & (ix < 8) & (iy >= 0) & (iy < 12) & (coords[..., 2] >= -2) & (coords[..., 2] < 2)
    expected = torch.zeros_like(feats)
    for b in range(2):
        expected[b, inside[b]] = weight[b, :, iy[b, inside[b]], ix[b, inside[b]]].t()
    assert torch.equal(feats.grad, expected)


def test_layout_is_that_of_lidar_bev_maps_and_centerhead_targets():
    """A point at (x, y) lands where PointPillarsScatter puts its pillar and where CenterHead centres its target."""
    pytest.importorskip('mmdet3d')
    import mmprune4u_plugin  # noqa: F401
    from mmengine.structures import InstanceData
    from mmengine.registry import init_default_scope

    from mmdet3d.registry import MODELS
    from mmdet3d.structures import LiDARInstance3DBoxes
    init_default_scope('mmdet3d')

    pc_range, cell = [-8.0, -6.0, -2.0, 8.0, 6.0, 2.0], 0.5
    bounds = dict(xbound=(-8.0, 8.0, cell), ybound=(-6.0, 6.0, cell), zbound=(-2.0, 2.0, 4.0))
    point = torch.tensor([5.3, -2.2, 0.4])  # asymmetric in x and y, so a transposed layout fails
    ours = bev_pool(point.view(1, 1, 3), torch.ones(1, 1, 1), **bounds)[0, 0]

    voxelize = MODELS.build(dict(type='Det3DDataPreprocessor', voxel=True, voxel_type='hard', voxel_layer=dict(
        max_num_points=4, point_cloud_range=pc_range, voxel_size=[cell, cell, 4.0], max_voxels=(10, 10))))
    voxels = voxelize.voxelize([torch.cat([point, torch.zeros(1)]).view(1, 4)], None)
    scatter = MODELS.build(dict(type='PointPillarsScatter', in_channels=1, output_shape=[24, 32]))
    pillars = scatter(torch.ones(1, 1), voxels['coors'], 1)[0, 0]
    assert torch.equal(ours.nonzero(), pillars.nonzero())

    head = MODELS.build(dict(
        type='CenterHead', in_channels=8, tasks=[dict(num_class=1, class_names=['car'])],
        common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)),
        separate_head=dict(type='SeparateHead'),
        bbox_coder=dict(type='CenterPointBBoxCoder', pc_range=pc_range[:2], post_center_range=pc_range,
                        out_size_factor=1, voxel_size=[cell, cell], code_size=9),
        train_cfg=dict(grid_size=[32, 24, 1], voxel_size=[cell, cell, 4.0], out_size_factor=1, dense_reg=1,
                       gaussian_overlap=0.1, max_objs=10, min_radius=1, point_cloud_range=pc_range,
                       code_weights=[1.0] * 10)))
    box = LiDARInstance3DBoxes(torch.tensor([[5.3, -2.2, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]), box_dim=9)
    heatmap = head.get_targets_single(InstanceData(bboxes_3d=box, labels_3d=torch.tensor([0])))[0][0][0]
    assert heatmap.shape == ours.shape
    assert torch.equal((heatmap == 1).nonzero(), ours.nonzero())
