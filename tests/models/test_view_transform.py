"""Geometry of the LSS view transform: pixel <-> LiDAR maps, the resize transform's aug matrix, a real object seen by
CAM_FRONT landing back in its BEV cell, mmdet3d's point augmentations followed by the frustum, and shapes."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet3d')
import mmprune4u_plugin  # noqa: E402,F401  (registers the models and the transform)
from mmprune4u_plugin.datasets.transforms import MultiViewImageResizeCrop  # noqa: E402
from mmprune4u_plugin.models.bev_pool import bev_cell_index, bev_pool  # noqa: E402
from mmprune4u_plugin.models.geometry import (camera_matrices, image_to_lidar, lidar_aug_matrix,  # noqa: E402
                                              lidar_to_image)
from mmprune4u_plugin.models.view_transform import LSSViewTransform  # noqa: E402

SAMPLE = Path(os.environ.get('MMPRUNE4U_SHARED_DATA', Path(__file__).resolve().parents[3] / 'shared' / 'data')) \
    / 'nuscenes-v1.0-mini-sample'
GRID = dict(xbound=(-51.2, 51.2, 0.8), ybound=(-51.2, 51.2, 0.8), zbound=(-10.0, 10.0, 20.0))


def rotation(gen, dtype=torch.float64):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=dtype))
    return q * torch.sign(torch.det(q))


def random_cameras(gen, batch=2, views=3):
    mats = dict(cam2img=torch.zeros(batch, views, 4, 4, dtype=torch.float64))
    mats['cam2img'][..., 0, 0] = mats['cam2img'][..., 1, 1] = 800.0
    mats['cam2img'][..., 0, 2], mats['cam2img'][..., 1, 2] = 700.0, 400.0
    mats['cam2img'][..., 2, 2] = mats['cam2img'][..., 3, 3] = 1.0
    mats['lidar2cam'] = torch.eye(4, dtype=torch.float64).repeat(batch, views, 1, 1)
    mats['img_aug_matrix'] = torch.eye(4, dtype=torch.float64).repeat(batch, views, 1, 1)
    mats['lidar_aug_matrix'] = torch.eye(4, dtype=torch.float64).repeat(batch, 1, 1)
    for b in range(batch):
        for n in range(views):
            mats['lidar2cam'][b, n, :3, :3] = rotation(gen)
            mats['lidar2cam'][b, n, :3, 3] = torch.randn(3, generator=gen, dtype=torch.float64)
            mats['img_aug_matrix'][b, n, 0, 0] = mats['img_aug_matrix'][b, n, 1, 1] = 0.2 + torch.rand(1, generator=gen)
            mats['img_aug_matrix'][b, n, :2, 3] = torch.randn(2, generator=gen, dtype=torch.float64) * 30
        mats['lidar_aug_matrix'][b, :3, :3] = rotation(gen) * 1.1
        mats['lidar_aug_matrix'][b, :3, 3] = torch.randn(3, generator=gen, dtype=torch.float64)
    return mats


def test_image_and_lidar_maps_are_inverse():
    gen = torch.Generator().manual_seed(0)
    mats = random_cameras(gen)
    uvd = torch.rand(5, 7, 3, generator=gen, dtype=torch.float64) * torch.tensor([350.0, 120.0, 50.0]) \
        + torch.tensor([0.0, 0.0, 1.0])
    lidar = image_to_lidar(uvd, **mats)
    assert lidar.shape == (2, 3, 5, 7, 3)
    for n in range(3):
        back = lidar_to_image(lidar[:, n].reshape(2, -1, 3), **mats)[:, n]
        torch.testing.assert_close(back, uvd.reshape(1, -1, 3).expand(2, -1, -1), rtol=0, atol=1e-8)


def test_lidar_aug_matrix_follows_mmdet3d_point_augmentations():
    from mmdet3d.datasets.transforms import GlobalRotScaleTrans, RandomFlip3D
    from mmdet3d.structures import LiDARInstance3DBoxes, LiDARPoints
    np.random.seed(0)
    raw = np.random.randn(50, 4).astype(np.float32) * 10
    results = dict(points=LiDARPoints(raw.copy(), points_dim=4), gt_bboxes_3d=LiDARInstance3DBoxes(torch.zeros(0, 7)),
                   bbox3d_fields=[])
    results = GlobalRotScaleTrans(rot_range=[-0.7, 0.7], scale_ratio_range=[0.9, 1.1],
                                  translation_std=[0.5, 0.5, 0.2]).transform(results)
    results = RandomFlip3D(sync_2d=False, flip_ratio_bev_horizontal=1.0,
                           flip_ratio_bev_vertical=1.0).transform(results)
    assert results['transformation_3d_flow'] == ['R', 'S', 'T', 'HF', 'VF']
    aug = lidar_aug_matrix(results)
    expected = results['points'].tensor[:, :3].double().numpy()
    np.testing.assert_allclose(raw[:, :3].astype(np.float64) @ aug[:3, :3].T + aug[:3, 3], expected, atol=1e-4)
    assert np.array_equal(lidar_aug_matrix(dict(lidar_aug_matrix=aug)), aug)
    assert np.array_equal(lidar_aug_matrix({}), np.eye(4))


def test_missing_calibration_names_the_meta_key():
    with pytest.raises(KeyError, match='`lidar2cam`.*meta_keys'):
        camera_matrices([dict(cam2img=[np.eye(3)] * 2)], num_views=2)


@pytest.fixture(scope='module')
def front_object():
    """A real annotated object in front of CAM_FRONT, its independent projection, and the sample's calibrations."""
    if not SAMPLE.is_dir():
        pytest.skip(f'real nuScenes sample {SAMPLE} is absent (it lives in ../shared/data beside the repo)')
    info = pickle.load(open(next(SAMPLE.glob('*.pkl')), 'rb'))['data_list'][0]
    cams = list(info['images'])
    front = info['images']['CAM_FRONT']
    lidar2cam, intrinsics = np.asarray(front['lidar2cam']), np.asarray(front['cam2img'])
    for inst in info['instances']:
        centre = np.asarray(inst['bbox_3d'][:3]) + [0, 0, inst['bbox_3d'][5] / 2]
        cam = lidar2cam[:3, :3] @ centre + lidar2cam[:3, 3]
        u, v = (intrinsics @ cam)[:2] / cam[2]
        if 8 < cam[2] < 40 and 100 < u < 1500 and 300 < v < 800:
            return dict(info=info, cams=cams, view=cams.index('CAM_FRONT'), centre=centre, uv=(u, v), depth=cam[2])
    pytest.skip('no annotated object in front of CAM_FRONT')


@pytest.mark.parametrize('scale', [None, 0.5, 0.1])  # fit the width (crop the top), crop both ways, pad
def test_resize_crop_moves_pixels_as_its_aug_matrix_says(scale):
    u0, v0 = 800, 800
    img = np.zeros((900, 1600, 3), dtype=np.float32)
    img[v0 - 4:v0 + 5, u0 - 4:u0 + 5] = 255.0
    out = MultiViewImageResizeCrop(final_size=(128, 352), scale=scale).transform(dict(img=[img, img]))
    small, aug = out['img'][1][..., 0], out['img_aug_matrix'][1]
    assert small.shape == (128, 352) and out['img_shape'] == (128, 352)
    rows, cols = np.nonzero(small)
    weights = small[rows, cols]
    centroid = np.array([(cols * weights).sum(), (rows * weights).sum()]) / weights.sum()
    np.testing.assert_allclose(centroid, aug[:2, :2] @ [u0, v0] + aug[:2, 3], atol=0.3)


def test_resize_crop_rejects_bad_args():
    with pytest.raises(ValueError, match='`final_size` must be'):
        MultiViewImageResizeCrop(final_size=(0, 352))
    with pytest.raises(ValueError, match='not both'):
        MultiViewImageResizeCrop(final_size=(128, 352), scale=0.2, scale_range=(0.2, 0.3))


def test_real_object_projects_to_its_pixel_and_its_frustum_cell_lands_on_it_in_bev(front_object):
    info, view = front_object['info'], front_object['view']
    meta = dict(img=[np.zeros((900, 1600, 3), np.uint8)] * 6,  # all six nuScenes cameras are 1600x900
                cam2img=[info['images'][c]['cam2img'] for c in front_object['cams']],
                lidar2cam=[info['images'][c]['lidar2cam'] for c in front_object['cams']])
    meta = MultiViewImageResizeCrop(final_size=(128, 352)).transform(meta)
    aug = meta['img_aug_matrix'][view]
    mats = camera_matrices([meta], num_views=len(meta['cam2img']))
    centre = torch.tensor(front_object['centre'], dtype=torch.float32).view(1, 1, 3)

    u, v, depth = lidar_to_image(centre, **mats)[0, view, 0].tolist()
    np.testing.assert_allclose([u, v], aug[:2, :2] @ front_object['uv'] + aug[:2, 3], atol=1e-2)
    assert depth == pytest.approx(front_object['depth'], abs=1e-3)
    projected = meta['lidar2img'][view] @ np.append(front_object['centre'], 1.0)
    np.testing.assert_allclose(projected[:2] / projected[2], [u, v], atol=1e-2)

    vt = LSSViewTransform(in_channels=4, out_channels=1, image_size=(128, 352), feature_size=(16, 44),
                          dbound=(1.0, 60.0, 1.0), **GRID)
    k, i, j = int(round(depth - 1.0)), int(v // 8), int(u // 8)
    geom = vt.geometry(**mats)
    assert geom.shape == (1, 6, 59, 16, 44, 3)
    frustum_point = geom[0, view, k, i, j]
    # within half a depth bin along the ray and the half-diagonal of a stride-8 cell across it
    lateral = 8 / np.sqrt(2) * depth / (mats['cam2img'][0, view, 0, 0].item() * aug[0, 0])
    assert torch.dist(frustum_point, centre.view(3)).item() < 0.5 + 1.5 * lateral

    feats = torch.zeros(1, 6, 59, 16, 44, 1)
    feats[0, view, k, i, j] = 1.0
    bev = bev_pool(geom, feats, **GRID)[0, 0]
    cell = bev.nonzero()[0]
    centre_cell, inside = bev_cell_index(centre.view(3), **GRID)
    assert inside and bev.sum() == 1
    assert abs(cell[0] - centre_cell // 128) <= 1 and abs(cell[1] - centre_cell % 128) <= 1  # (row y, column x)

    # the whole forward: every pixel's depth put in bin k lights the object's cell among a ring of cells
    with torch.no_grad():
        vt.depthnet.weight.zero_()
        vt.depthnet.bias.zero_()
        vt.depthnet.bias[k] = 50.0
        vt.depthnet.bias[-1] = 1.0
    bev = vt(torch.zeros(1, 6, 4, 16, 44), **mats)[0, 0]
    assert bev[cell[0], cell[1]] > 0.99
    _, in_grid = bev_cell_index(geom[:, :, k], **GRID)
    assert bev.sum().item() == pytest.approx(in_grid.sum().item(), rel=1e-4)


def test_forward_shapes_with_downsample_and_z_cells():
    gen = torch.Generator().manual_seed(2)
    mats = {k: v.float() for k, v in random_cameras(gen, batch=2, views=3).items()}
    vt = LSSViewTransform(in_channels=8, out_channels=4, image_size=(64, 96), feature_size=(8, 12),
                          xbound=(-20.0, 20.0, 0.5), ybound=(-10.0, 10.0, 0.5), zbound=(-10.0, 10.0, 10.0),
                          dbound=(1.0, 30.0, 2.0), downsample=2)
    out = vt(torch.randn(2, 3, 8, 8, 12, generator=gen), **mats)
    assert out.shape == (2, 8, 20, 40)  # 2 z cells x 4 channels; (40 x 80 cells) / 2
    with pytest.raises(ValueError, match='feature_size'):
        vt(torch.randn(2, 3, 8, 16, 12), **mats)
    with pytest.raises(ValueError, match='`downsample` must be 1 or 2'):
        LSSViewTransform(8, 4, (64, 96), (8, 12), (-1, 1, 1), (-1, 1, 1), (-1, 1, 2), (1, 2, 1), downsample=4)


def test_mean_pool_divides_by_the_depth_mass_from_one_pixel_on():
    """Camera frame = LiDAR frame, 16 x 8 image, 2 x 4 features, f = 400 px and the principal point at (-150, -150)
    so that all 8 feature cells' rays stay in one BEV cell up to 8 m. Each pixel puts half its depth mass at 3 m
    and half at 7 m (mass 4 per cell); context channel 0 is 1 (the sum-pooled channel 0 is the mass), channel 1
    the feature column + 1. 'sum' gives 4 and 4 x 2.5; 'mean' gives 1 and 2.5 (the mean over the columns)."""
    views = dict(image_size=(8, 16), feature_size=(2, 4), dbound=(1.0, 11.0, 1.0), **GRID)
    vt_sum, vt_mean = LSSViewTransform(2, 2, **views), LSSViewTransform(2, 2, pool='mean', **views)
    for vt in (vt_sum, vt_mean):
        with torch.no_grad():
            vt.depthnet.weight.zero_()
            vt.depthnet.bias.fill_(-50.0)
            vt.depthnet.bias[[2, 6]] = 0.0  # depth bins 3 m and 7 m, half each
            vt.depthnet.bias[10:] = torch.tensor([1.0, 0.0])  # context: channel 0 = 1, channel 1 = input 0
            vt.depthnet.weight[11, 0] = 1.0
    feats = torch.zeros(1, 1, 2, 2, 4)
    feats[0, 0, 0] = torch.arange(1.0, 5.0)
    mats = _pinhole()
    mats['cam2img'][..., 0, 0] = mats['cam2img'][..., 1, 1] = 400.0
    mats['cam2img'][..., 0, 2] = mats['cam2img'][..., 1, 2] = -150.0
    summed, mean = vt_sum(feats, **mats)[0], vt_mean(feats, **mats)[0]
    cells = (summed[0] > 1e-6).nonzero()  # (the other bins get e^-50)
    assert len(cells) == 2  # one BEV cell per depth
    for y, x in cells:
        assert summed[:, y, x].tolist() == pytest.approx([4.0, 10.0], rel=1e-5)
        assert mean[:, y, x].tolist() == pytest.approx([1.0, 2.5], rel=1e-5)
    torch.testing.assert_close(mean, summed / summed[:1].clamp(min=1.0))
    with pytest.raises(ValueError, match="`pool` must be 'sum' or 'mean'"):
        LSSViewTransform(2, 2, pool='max', **views)


def _pinhole(batch=1, views=1):
    """Camera frame = LiDAR frame, f = 4 px, principal point at the centre of a 16 x 8 image."""
    mats = dict(cam2img=torch.eye(4).repeat(batch, views, 1, 1), lidar2cam=torch.eye(4).repeat(batch, views, 1, 1),
                img_aug_matrix=torch.eye(4).repeat(batch, views, 1, 1), lidar_aug_matrix=torch.eye(4).repeat(batch, 1, 1))
    mats['cam2img'][..., 0, 0] = mats['cam2img'][..., 1, 1] = 4.0
    mats['cam2img'][..., 0, 2], mats['cam2img'][..., 1, 2] = 7.5, 3.5
    return mats


def test_depth_targets_take_the_nearest_point_per_feature_cell():
    """Image 8 x 16, features 2 x 4 (stride 4), depth bins 1..11 m of 1 m: hand-placed points."""
    vt = LSSViewTransform(8, 4, image_size=(8, 16), feature_size=(2, 4), dbound=(1.0, 11.0, 1.0),
                          depth_loss_weight=1.0, **GRID)
    points = torch.tensor([
        [0.0, 0.0, 5.0],        # pixel (7.5, 3.5) -> cell row 1, col 2; depth 5 -> bin 4
        [0.0, 0.0, 8.0],        # same cell, farther: the nearest point wins
        [-5.625, -2.625, 3.0],  # pixel (0, 0) -> cell row 0, col 0; depth 3 -> bin 2
        [0.0, 0.0, -5.0],       # behind the camera
        [0.0, 0.0, 20.0],       # beyond the last bin
        [10.0, 0.0, 2.0],       # pixel u = 27.5: outside the image
    ])
    target = vt.depth_targets([points], **_pinhole())
    expected = torch.full((1, 1, 2, 4), -1, dtype=torch.long)
    expected[0, 0, 1, 2], expected[0, 0, 0, 0] = 4, 2
    assert torch.equal(target, expected)


def test_depth_loss_is_cross_entropy_on_the_supervised_cells():
    vt = LSSViewTransform(8, 4, image_size=(8, 16), feature_size=(2, 4), dbound=(1.0, 11.0, 1.0),
                          depth_loss_weight=2.0, **GRID).train()
    torch.manual_seed(0)
    feats = torch.randn(1, 1, 8, 2, 4)
    vt.lift(feats)
    assert vt._depth_logits is None  # kept only inside a loss pass
    with vt.recording_depth():
        vt.lift(feats)
        logits = vt._depth_logits.detach().clone()
        loss = vt.depth_loss([torch.tensor([[0.0, 0.0, 5.0], [-5.625, -2.625, 3.0]])], **_pinhole())
    manual = torch.nn.functional.cross_entropy(torch.stack([logits[0, :, 1, 2], logits[0, :, 0, 0]]),
                                               torch.tensor([4, 2]))
    torch.testing.assert_close(loss, 2.0 * manual)
    loss.backward()
    assert vt.depthnet.weight.grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match='no depth logits'):
        vt.depth_loss([torch.zeros(1, 3)], **_pinhole())  # consumed: one loss per forward
    vt.eval()
    vt.lift(feats)
    assert vt._depth_logits is None  # nothing kept outside training
    with pytest.raises(ValueError, match='`depth_loss_weight` must be >= 0'):
        LSSViewTransform(8, 4, image_size=(8, 16), feature_size=(2, 4), dbound=(1.0, 11.0, 1.0),
                         depth_loss_weight=-1.0, **GRID)
