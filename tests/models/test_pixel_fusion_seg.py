"""MinkUNetPixelFusion: pixel gathering at known positions, the projection of augmented voxels against mmdet3d's own
reverse augmentation and the KITTI calib file, the camera's reach, and the LiDAR-only twin."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from mmprune4u_plugin.datasets.synthetic_semantickitti import SyntheticSemanticKittiConfig, \
    generate_synthetic_semantickitti
from mmprune4u_plugin.models.pixel_fusion_seg import gather_pixel_features

REPO = Path(__file__).resolve().parents[2]
FUSED = REPO / 'configs/semantickitti/minkunet-pixelfusion_small_1xb2-2k_synthetic-semantickitti.py'
LIDAR_ONLY = REPO / 'configs/semantickitti/minkunet-pixelfusion_small_lidar-only_1xb2-2k_synthetic-semantickitti.py'


def test_gather_pixel_features_at_pixel_centres_outside_and_behind():
    # a 2-channel 4x6 map on a 4x6 image: channel 0 = 10 * row + col, channel 1 = -(10 * row + col)
    rows, cols = torch.meshgrid(torch.arange(4.), torch.arange(6.), indexing='ij')
    fmap = torch.stack([10 * rows + cols, -(10 * rows + cols)])
    uvd = torch.tensor([[0.5, 0.5, 5.0],     # centre of pixel (0, 0)
                        [3.5, 2.5, 1.0],     # centre of pixel (2, 3)
                        [4.0, 2.5, 2.0],     # halfway between (2, 3) and (2, 4)
                        [3.5, 2.5, -1.0],    # behind the camera
                        [6.5, 0.5, 3.0],     # right of the image
                        [1.5, -0.5, 3.0]])   # above it
    feats, valid = gather_pixel_features(fmap, uvd, (4, 6))
    assert valid.tolist() == [True, True, True, False, False, False]
    assert feats[:, 0].tolist() == pytest.approx([0.0, 23.0, 23.5, 0.0, 0.0, 0.0], abs=1e-5)
    assert feats[:, 1].tolist() == pytest.approx([0.0, -23.0, -23.5, 0.0, 0.0, 0.0], abs=1e-5)
    # a stride-2 map (2x3 cells for the 4x6 image): the centre of cell (1, 2) is input pixel (u, v) = (5, 3)
    coarse, valid = gather_pixel_features(fmap[:, ::2, ::2], torch.tensor([[5.0, 3.0, 1.0]]), (4, 6))
    assert valid.tolist() == [True] and coarse[0].tolist() == pytest.approx([24.0, -24.0], abs=1e-5)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('skitti_fusion')
    generate_synthetic_semantickitti(root, {'train': (0,), 'val': (8,), 'test': (11,)},
                                     SyntheticSemanticKittiConfig(seed=0, frames=1))
    return root


def _build(config: Path, data_root: Path, *, augment: bool):
    """(model, one preprocessed batch) of a config on the generated data; ``augment``: force both flips + rotation."""
    from mmdet3d.registry import DATASETS, MODELS
    from mmdet3d.utils import register_all_modules
    import mmprune4u_plugin  # noqa: F401
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(config))
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset if augment else cfg.test_dataloader.dataset)
    ds_cfg.data_root = str(data_root)
    for step in ds_cfg.pipeline:
        if step['type'] == 'RandomFlip3D':
            step.update(flip_ratio_bev_horizontal=1.0, flip_ratio_bev_vertical=1.0)
    dataset = DATASETS.build(ds_cfg)
    model = MODELS.build(cfg.model)
    batch = model.data_preprocessor(pseudo_collate([dataset[0]]), training=False)
    return model, batch


def _kitti_projection(calib_file: Path) -> np.ndarray:
    """P2 @ Tr (3x4 @ 4x4) read from a KITTI odometry calib.txt, independently of the info pkls."""
    rows = {line.split(':')[0]: np.array(line.split(':')[1].split(), np.float64)
            for line in calib_file.read_text().splitlines() if ':' in line}
    tr = np.eye(4)
    tr[:3] = rows['Tr'].reshape(3, 4)
    return rows['P2'].reshape(3, 4) @ tr


def test_voxels_are_projected_where_kitti_calib_puts_their_unaugmented_points(data_root):
    from mmdet3d.models.layers.fusion_layers import apply_3d_transformation
    model, batch = _build(FUSED, data_root, augment=True)
    sample = batch['data_samples'][0]
    assert sample.metainfo['transformation_3d_flow'] == ['HF', 'VF', 'R', 'S', 'T']
    voxels, coors = batch['inputs']['voxels']['voxels'], batch['inputs']['voxels']['coors']
    height, width = batch['inputs']['imgs'].shape[-2:]
    # a full-resolution "feature map" whose two channels are each pixel centre's u and v
    v_grid, u_grid = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing='ij')
    fmap = torch.stack([u_grid, v_grid])[None].float()
    got = model.voxel_camera_features(fmap, (height, width), voxels, coors, [sample])
    raw = apply_3d_transformation(voxels[:, :3].clone(), 'LIDAR', sample.metainfo, reverse=True).double().numpy()
    proj = _kitti_projection(data_root / 'sequences/00/calib.txt') @ np.c_[raw, np.ones(len(raw))].T
    uv = (proj[:2] / proj[2]).T
    inside = (proj[2] > 0) & (uv[:, 0] > 1) & (uv[:, 0] < width - 1) & (uv[:, 1] > 1) & (uv[:, 1] < height - 1)
    assert inside.sum() > 1000 and (~inside).sum() > 1000  # the front camera sees part of the scan
    np.testing.assert_allclose(got[torch.from_numpy(inside)].numpy(), uv[inside], atol=2e-2)
    outside = (proj[2] <= 0) | (uv[:, 0] < -1) | (uv[:, 0] > width + 1) | (uv[:, 1] < -1) | (uv[:, 1] > height + 1)
    assert got[torch.from_numpy(outside)].abs().max() == 0


def test_the_camera_changes_the_voxels_it_sees_and_no_other(data_root):
    model, batch = _build(FUSED, data_root, augment=False)
    model.eval()
    with torch.no_grad():
        base = model._forward(batch['inputs'], batch['data_samples'])
        dark = dict(batch['inputs'], imgs=torch.zeros_like(batch['inputs']['imgs']))
        other = model._forward(dark, batch['data_samples'])
        voxels, coors = batch['inputs']['voxels']['voxels'], batch['inputs']['voxels']['coors']
        ones = torch.ones(1, 1, *batch['inputs']['imgs'].shape[-2:])
        seen = model.voxel_camera_features(ones, ones.shape[-2:], voxels, coors, batch['data_samples'])[:, 0] > 0
    changed = (base - other).abs().amax(dim=1) > 1e-6
    assert seen.sum() > 1000 and (~seen).sum() > 1000
    assert torch.equal(changed & ~seen, torch.zeros_like(seen))  # unseen voxels: bit-identical logits
    assert changed[seen].float().mean() > 0.99


def test_lidar_only_twin_needs_no_image_and_the_fused_model_says_what_it_misses(data_root):
    model, batch = _build(LIDAR_ONLY, data_root, augment=False)
    assert model.img_backbone is None and 'imgs' not in batch['inputs']
    model.eval()
    with torch.no_grad():
        logits = model._forward(batch['inputs'], batch['data_samples'])
    assert logits.shape == (batch['inputs']['voxels']['voxels'].shape[0], 19)
    fused, fused_batch = _build(FUSED, data_root, augment=False)
    no_image = {k: v for k, v in fused_batch['inputs'].items() if k != 'imgs'}
    with pytest.raises(ValueError, match='needs `imgs`'):
        fused._forward(no_image, fused_batch['data_samples'])
