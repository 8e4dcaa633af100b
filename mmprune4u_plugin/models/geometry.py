"""Camera/LiDAR geometry of the LSS view transform: per-sample matrices from data-sample metainfo, and the maps
between augmented image pixels with depth and (augmented) LiDAR coordinates.

Meta keys (per sample; N = number of cameras, in the order of the stacked images):
    - ``cam2img``: N intrinsics of the *original* images, 3x3 or 4x4 (mmdet3d's nuScenes infos).
    - ``lidar2cam``: N 4x4 LiDAR -> camera extrinsics (mmdet3d's nuScenes infos).
    - ``img_aug_matrix`` (optional, identity if absent): N 4x4 maps from original-image pixels to the network's input
      pixels (resize, crop, flip, rotation in the image plane), BEVFusion's convention: ``[u', v'] = A[:2, :2] @ [u, v]
      + A[:2, 3]``, depth untouched. Written by :class:`~mmprune4u_plugin.datasets.transforms.MultiViewImageResizeCrop`.
    - ``lidar_aug_matrix`` (optional): 4x4 map from the raw LiDAR frame to the augmented one. If absent it is composed
      from mmdet3d's own augmentation record (``transformation_3d_flow`` with ``pcd_rotation``, ``pcd_scale_factor``,
      ``pcd_trans``, ``pcd_horizontal_flip``, ``pcd_vertical_flip``), so mmdet3d's ``GlobalRotScaleTrans`` and
      ``RandomFlip3D`` keep the camera frustum on top of the augmented points; identity when nothing was applied.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def as_4x4(matrix) -> np.ndarray:
    """A 3x3 or 4x4 matrix (array, list or CPU tensor) as a float64 4x4 with identity padding."""
    matrix = np.asarray(matrix, dtype=np.float64)
    out = np.eye(4)
    out[:matrix.shape[0], :matrix.shape[1]] = matrix
    return out


def lidar_aug_matrix(meta: dict) -> np.ndarray:
    """The 4x4 raw -> augmented LiDAR map of one sample (see the module docstring)."""
    if 'lidar_aug_matrix' in meta:
        return as_4x4(meta['lidar_aug_matrix'])
    out = np.eye(4)
    for step in meta.get('transformation_3d_flow', []):
        m = np.eye(4)
        if step == 'R':  # points become points @ pcd_rotation (row vectors)
            m[:3, :3] = np.asarray(meta['pcd_rotation'], dtype=np.float64).T
        elif step == 'S':
            m[:3, :3] *= float(meta['pcd_scale_factor'])
        elif step == 'T':
            m[:3, 3] = np.asarray(meta['pcd_trans'], dtype=np.float64)
        elif step == 'HF':  # LiDAR horizontal flip: y -> -y
            m[1, 1] = -1.0
        elif step == 'VF':  # LiDAR vertical flip: x -> -x
            m[0, 0] = -1.0
        else:
            raise ValueError(f'unknown step {step!r} in `transformation_3d_flow`: {meta["transformation_3d_flow"]}')
        out = m @ out
    return out


def camera_matrices(metas: Sequence[dict], *, num_views: int, device=None) -> dict[str, Tensor]:
    """Stack the per-view matrices of a batch: ``cam2img``, ``lidar2cam``, ``img_aug_matrix`` as ``(B, N, 4, 4)``
    and ``lidar_aug_matrix`` as ``(B, 4, 4)``, float32."""
    out: dict[str, list] = dict(cam2img=[], lidar2cam=[], img_aug_matrix=[], lidar_aug_matrix=[])
    for i, meta in enumerate(metas):
        for key in ('cam2img', 'lidar2cam'):
            if key not in meta or len(meta[key]) != num_views:
                raise KeyError(f'sample {i}: metainfo `{key}` must hold one matrix per camera ({num_views}), but got '
                               f'{None if key not in meta else len(meta[key])}; add it to Pack3DDetInputs meta_keys')
            out[key].append([as_4x4(m) for m in meta[key]])
        out['img_aug_matrix'].append([as_4x4(m) for m in meta.get('img_aug_matrix', [np.eye(4)] * num_views)])
        out['lidar_aug_matrix'].append(lidar_aug_matrix(meta))
    return {k: torch.as_tensor(np.asarray(v), dtype=torch.float32, device=device) for k, v in out.items()}


def image_to_lidar(points: Tensor, *, cam2img: Tensor, lidar2cam: Tensor, img_aug_matrix: Tensor,
                   lidar_aug_matrix: Tensor) -> Tensor:
    """Map input-image pixels with depth ``(u, v, d)`` of every camera to augmented LiDAR coordinates.

    ``p = L @ inv(lidar2cam) @ inv(K) @ (u0 d, v0 d, d, 1)`` with ``(u0, v0, d, 1) = inv(A) @ (u, v, d, 1)``, where
    A is the image augmentation, K the 4x4 intrinsics and L the LiDAR augmentation.

    Args:
        points (Tensor): ``(..., 3)`` pixel u (column), v (row) in the input image and depth d (metres), shared by
            all cameras (e.g. the frustum ``(D, H, W, 3)``).
        cam2img, lidar2cam, img_aug_matrix (Tensor): ``(B, N, 4, 4)``.
        lidar_aug_matrix (Tensor): ``(B, 4, 4)``.

    Returns:
        Tensor: ``(B, N, ..., 3)``.
    """
    batch, views = cam2img.shape[:2]
    inner = points.shape[:-1]
    flat = torch.cat([points.reshape(-1, 3), points.new_ones(points[..., :1].numel(), 1)], dim=1).t()  # 4 x P
    uvd = torch.linalg.solve(img_aug_matrix, flat.expand(batch, views, 4, -1))
    cam = torch.cat([uvd[..., :2, :] * uvd[..., 2:3, :], uvd[..., 2:, :]], dim=-2)
    to_lidar = lidar_aug_matrix[:, None] @ torch.linalg.inv(lidar2cam) @ torch.linalg.inv(cam2img)
    lidar = (to_lidar @ cam)[..., :3, :].transpose(-1, -2)
    return lidar.reshape(batch, views, *inner, 3)


def lidar_to_image(points: Tensor, *, cam2img: Tensor, lidar2cam: Tensor, img_aug_matrix: Tensor,
                   lidar_aug_matrix: Tensor) -> Tensor:
    """The inverse of :func:`image_to_lidar`: augmented LiDAR points ``(B, P, 3)`` to ``(B, N, P, 3)`` input-image
    ``(u, v, depth)`` in every camera (depth <= 0: behind the camera)."""
    hom = torch.cat([points, points.new_ones(*points.shape[:-1], 1)], dim=-1).transpose(-1, -2)  # B x 4 x P
    raw = torch.linalg.solve(lidar_aug_matrix, hom)[:, None]
    cam = cam2img @ lidar2cam @ raw
    depth = cam[..., 2:3, :]
    uv1 = torch.cat([cam[..., :2, :] / depth, torch.ones_like(depth), torch.ones_like(depth)], dim=-2)
    uv = (img_aug_matrix @ uv1)[..., :2, :]
    return torch.cat([uv, depth], dim=-2).transpose(-1, -2)
