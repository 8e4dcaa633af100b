"""Shim: mmdet3d 1.4.0's MinkUNet voxelisation moves its indices to CUDA unconditionally.

Upstream bug (mmdet3d 1.4.0): ``Det3DDataPreprocessor.voxelize`` with ``voxel_type='minkunet'`` (MinkUNet, SPVCNN
on SemanticKITTI) calls ``torch.from_numpy(...).cuda()`` on the voxel indices and the point-to-voxel map, so a CPU
build raises ``AssertionError: Torch not compiled with CUDA enabled`` (and a CUDA build with CPU points indexes
CPU tensors with CUDA ones).

Reproduced: ``Det3DDataPreprocessor(voxel=True, voxel_type='minkunet', voxel_layer=dict(voxel_size=[.05] * 3,
max_num_points=-1, point_cloud_range=[-100, -100, -20, 100, 100, 20], max_voxels=(-1, -1)))`` on any CPU points.

Patch: ``Det3DDataPreprocessor.voxelize`` becomes a dispatcher: ``voxel_type='minkunet'`` with CPU points goes to
:func:`minkunet_voxelize`, the same quantisation with the indices kept on the points' device; every other case goes
to the original method.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List

import numpy as np
import torch
import torch.nn.functional as F

_MARK = '_mmprune4u_shim'


def minkunet_voxelize(preprocessor: Any, points: List[torch.Tensor], data_samples: list) -> Dict[str, torch.Tensor]:
    """MinkUNet's voxelisation (one point kept per occupied voxel, the first by hash order), device-agnostic.

    Sets, like upstream, ``gt_pts_seg.voxel_semantic_mask``, ``batch_idx`` and ``point2voxel_map`` on each sample.
    """
    voxel_size = points[0].new_tensor(preprocessor.voxel_layer.voxel_size)
    voxels, coors = [], []
    for i, (cloud, sample) in enumerate(zip(points, data_samples)):
        cloud_coors = torch.round(cloud[:, :3] / voxel_size).int()
        cloud_coors -= cloud_coors.min(0)[0]
        keep, point2voxel = preprocessor.sparse_quantize(cloud_coors.cpu().numpy(), return_index=True,
                                                         return_inverse=True)
        if preprocessor.training and preprocessor.max_voxels is not None and len(keep) > preprocessor.max_voxels:
            keep = np.random.choice(keep, preprocessor.max_voxels, replace=False)
        keep = torch.from_numpy(keep).to(cloud.device)
        if hasattr(sample.gt_pts_seg, 'pts_semantic_mask'):
            sample.gt_pts_seg.voxel_semantic_mask = sample.gt_pts_seg.pts_semantic_mask[keep]
        pad = (1, 0) if preprocessor.batch_first else (0, 1)
        voxel_coors = F.pad(cloud_coors[keep], pad, mode='constant', value=i)
        sample.batch_idx = voxel_coors[:, 0 if preprocessor.batch_first else -1]
        sample.point2voxel_map = torch.from_numpy(point2voxel.reshape(-1)).to(cloud.device).long()
        voxels.append(cloud[keep])
        coors.append(voxel_coors)
    return dict(voxels=torch.cat(voxels, dim=0), coors=torch.cat(coors, dim=0))


def make_dispatcher(original: Callable) -> Callable:
    """``voxel_type='minkunet'`` on CPU points goes to :func:`minkunet_voxelize`, everything else to ``original``."""

    @torch.no_grad()
    def voxelize(self: Any, points: List[torch.Tensor], data_samples: list) -> Dict[str, torch.Tensor]:
        if self.voxel_type == 'minkunet' and points[0].device.type == 'cpu':
            return minkunet_voxelize(self, points, data_samples)
        return original(self, points, data_samples)

    voxelize.__wrapped__ = original
    setattr(voxelize, _MARK, True)
    return voxelize


def apply() -> bool:
    """Install the dispatcher on ``Det3DDataPreprocessor`` (idempotent). Returns True."""
    from mmdet3d.models.data_preprocessors import Det3DDataPreprocessor

    if not getattr(Det3DDataPreprocessor.voxelize, _MARK, False):
        Det3DDataPreprocessor.voxelize = make_dispatcher(Det3DDataPreprocessor.voxelize)
    return True
