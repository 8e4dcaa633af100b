"""Keep only the points a camera sees: the evaluation region of LiDAR-camera segmentors (PMF evaluates there)."""
from __future__ import annotations

import numpy as np
from mmcv.transforms import BaseTransform

from mmdet3d.registry import TRANSFORMS


def _as_4x4(matrix) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    out = np.eye(4)
    out[:matrix.shape[0], :matrix.shape[1]] = matrix
    return out


def in_camera_fov(xyz: np.ndarray, cam2img, lidar2cam, width: int, height: int) -> np.ndarray:
    """Bool mask of LiDAR points ``(N, 3)`` in front of the camera whose projection lands inside the image."""
    hom = np.concatenate([xyz.astype(np.float64), np.ones((len(xyz), 1))], axis=1)
    cam = (_as_4x4(cam2img) @ _as_4x4(lidar2cam) @ hom.T)[:3]
    depth = cam[2]
    with np.errstate(divide='ignore', invalid='ignore'):
        u, v = cam[0] / depth, cam[1] / depth
    return (depth > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)


@TRANSFORMS.register_module()
class PointsInCameraFOV(BaseTransform):
    """Drop the points (and their ``pts_semantic_mask`` / ``pts_instance_mask``, also in ``eval_ann_info``) outside
    one camera's view.

    For evaluation on the region a LiDAR-camera model can see (the front camera of SemanticKITTI covers about a fifth
    of a scan). Reads ``results['images'][camera]``: ``cam2img``, ``lidar2cam``, ``width`` and ``height`` (mmdet3d's
    info format), so it needs no loaded image and works in LiDAR-only pipelines too. Place it right after the
    loading steps: it projects the raw LiDAR frame and refuses augmented points.

    Args:
        camera (str): Key of the camera in ``results['images']``. Defaults to 'CAM2' (KITTI's left colour camera).
    """

    def __init__(self, camera: str = 'CAM2') -> None:
        self.camera = camera

    def transform(self, results: dict) -> dict:
        if results.get('transformation_3d_flow'):
            raise ValueError(f'PointsInCameraFOV projects raw LiDAR points, but the points were already augmented '
                             f'({results["transformation_3d_flow"]}): put it before the 3D augmentation')
        images = results.get('images') or {}
        if self.camera not in images:
            raise ValueError(f'PointsInCameraFOV: no camera {self.camera!r} in results["images"] '
                           f'(cameras: {sorted(images)}) of {results.get("lidar_path")}')
        cam = images[self.camera]
        points = results['points']
        keep = in_camera_fov(points.tensor[:, :3].numpy(), cam['cam2img'], cam['lidar2cam'], int(cam['width']),
                             int(cam['height']))
        if not keep.any():
            raise ValueError(f'PointsInCameraFOV: camera {self.camera!r} sees none of the {len(keep)} points of '
                             f'{results.get("lidar_path")}')
        results['points'] = points[keep]
        # the labels, and the copies SegMetric scores against (eval_ann_info, written by LoadAnnotations3D in test mode)
        for labels in (results, results.get('eval_ann_info') or {}):
            for key in ('pts_semantic_mask', 'pts_instance_mask'):
                if key in labels:
                    labels[key] = labels[key][keep]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(camera={self.camera!r})'
