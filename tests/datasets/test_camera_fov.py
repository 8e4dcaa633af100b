"""PointsInCameraFOV: on the real KITTI frame against mmdet3d's own ``lidar2img`` and the PNG's size, on a synthetic
SemanticKITTI scan against its calib.txt with the labels kept in step, and its refusals."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip('mmdet3d')
from mmdet3d.structures import LiDARPoints  # noqa: E402

from mmprune4u_plugin.datasets.camera_fov import PointsInCameraFOV  # noqa: E402
from mmprune4u_plugin.datasets.synthetic_semantickitti import (SyntheticSemanticKittiConfig,  # noqa: E402
                                                               generate_synthetic_semantickitti, hdl64e)

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get('MMPRUNE4U_SHARED_DATA', REPO.parent / 'shared' / 'data'))


def _inside(uvd: np.ndarray, width: int, height: int) -> np.ndarray:
    u, v = uvd[:, 0] / uvd[:, 2], uvd[:, 1] / uvd[:, 2]
    return (uvd[:, 2] > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)


def test_real_kitti_frame_keeps_what_mmdet3d_lidar2img_puts_in_the_image():
    root = SHARED_DATA / 'kitti-sample'
    if not root.is_dir():
        pytest.skip(f'real sample data {root} is absent (it lives in ../shared/data beside the repo in CI)')
    info = pickle.loads((root / '000008.pkl').read_bytes())['data_list'][0]
    reduced = np.fromfile(root / '000008.bin', np.float32).reshape(-1, 4)  # mmdet3d's sample: cropped to the view
    mirrored = reduced * np.array([-1, -1, 1, 1], np.float32)  # the same points turned 180 degrees: behind
    pts = np.concatenate([reduced, mirrored])
    height, width = cv2.imread(str(root / '000008.png')).shape[:2]
    uvd = (np.asarray(info['images']['CAM2']['lidar2img']) @ np.c_[pts[:, :3], np.ones(len(pts))].T).T[:, :3]
    expected = _inside(uvd, width, height)
    labels = np.arange(len(pts))  # stand-in labels: each point's index
    out = PointsInCameraFOV()(dict(points=LiDARPoints(torch.from_numpy(pts), points_dim=4), images=info['images'],
                                   pts_semantic_mask=labels))
    assert expected[:len(reduced)].mean() > 0.95 and not expected[len(reduced):].any()
    np.testing.assert_array_equal(out['pts_semantic_mask'], labels[expected])
    np.testing.assert_array_equal(out['points'].tensor.numpy(), pts[expected])


def test_synthetic_scan_against_its_calib_file_labels_in_step_and_refusals(tmp_path):
    generate_synthetic_semantickitti(tmp_path, {'train': (0,)},
                                     SyntheticSemanticKittiConfig(seed=0, frames=1, image_scale=0.25,
                                                                  lidar=hdl64e(256)))
    info = pickle.loads((tmp_path / 'semantickitti_infos_train.pkl').read_bytes())['data_list'][0]
    pts = np.fromfile(tmp_path / info['lidar_points']['lidar_path'], np.float32).reshape(-1, 4)
    sem = np.fromfile(tmp_path / info['pts_semantic_mask_path'], np.uint32).astype(np.int64)
    rows = {line.split(':')[0]: np.array(line.split(':')[1].split(), np.float64)
            for line in (tmp_path / 'sequences/00/calib.txt').read_text().splitlines() if ':' in line}
    tr = np.eye(4)
    tr[:3] = rows['Tr'].reshape(3, 4)
    uvd = (rows['P2'].reshape(3, 4) @ tr @ np.c_[pts[:, :3], np.ones(len(pts))].T).T
    height, width = cv2.imread(str(tmp_path / 'sequences/00/image_2/000000.png')).shape[:2]
    expected = _inside(uvd, width, height)
    results = dict(points=LiDARPoints(torch.from_numpy(pts), points_dim=4), images=info['images'],
                   pts_semantic_mask=sem, pts_instance_mask=sem >> 16, lidar_path='scan',
                   eval_ann_info=dict(pts_semantic_mask=sem & 0xFFFF))  # what SegMetric scores against
    out = PointsInCameraFOV('CAM2')(dict(results))
    np.testing.assert_array_equal(out['eval_ann_info']['pts_semantic_mask'], (sem & 0xFFFF)[expected])
    assert 0.05 < expected.mean() < 0.5
    np.testing.assert_array_equal(out['points'].tensor.numpy(), pts[expected])
    np.testing.assert_array_equal(out['pts_semantic_mask'], sem[expected])
    np.testing.assert_array_equal(out['pts_instance_mask'], (sem >> 16)[expected])
    with pytest.raises(ValueError, match='before the 3D augmentation'):
        PointsInCameraFOV()(dict(results, transformation_3d_flow=['R']))
    with pytest.raises(ValueError, match="no camera 'CAM3'"):
        PointsInCameraFOV('CAM3')(dict(results))
    behind = LiDARPoints(torch.tensor([[-10.0, 0.0, 0.0, 0.5]]), points_dim=4)  # behind the front camera
    with pytest.raises(ValueError, match='sees none of the 1 points'):
        PointsInCameraFOV()(dict(results, points=behind, pts_semantic_mask=sem[:1], pts_instance_mask=sem[:1],
                                 eval_ann_info={}))
