"""Shim: mmcv 2.1.0's ``dynamic_scatter`` (``DynamicScatter``) has no CPU kernel.

Upstream gap (mmcv 2.1.0): ``mmcv.ops.scatter_points.dynamic_scatter`` calls ``ext_module.
dynamic_point_to_voxel_forward``, which is registered for CUDA (and MLU) only. On CPU tensors it raises
``RuntimeError: dynamic_point_to_voxel_forward_impl: implementation for device cpu not found.``; MVX-Net's
``DynamicVFE`` (and ``DynamicSimpleVFE``, ``DynamicPillarFeatureNet``) use it through ``mmcv.ops.DynamicScatter``.

Reproduced: ``mmcv.ops.dynamic_scatter(torch.randn(10, 3), torch.randint(0, 3, (10, 3)).int(), 'max')``.

Patch: ``dynamic_scatter`` in ``mmcv.ops.scatter_points`` (the global that ``DynamicScatter.forward_single`` calls,
so the class that ``mmdet3d.models.voxel_encoders`` imports needs no change), in ``mmcv.ops`` and in any loaded
module that bound the original by name, becomes a dispatcher: CPU tensors go to :func:`dynamic_scatter_cpu`, a
pure-PyTorch port of mmcv's CUDA kernels (scatter_points_cuda.cu); every other device goes to the original.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Tuple

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

_MARK = '_mmprune4u_shim'
REDUCE_TYPES = ('max', 'mean', 'sum')


def _reduce(feats: torch.Tensor, coors: torch.Tensor,
            reduce_type: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward of ``DynamicPointToVoxelForwardCUDAKernelLauncher`` in torch ops.

    Points with any negative coordinate are dropped; voxels come out in ``torch.unique(dim=0)`` order (sorted
    lexicographically), ``point2voxel`` is -1 for dropped points, and ``max`` starts from -inf.
    """
    if feats.shape[0] == 0:
        empty = coors.new_empty(0, dtype=torch.int32)
        return feats.clone().detach(), coors.clone().detach(), empty, empty
    coors_clean = coors.masked_fill(coors.lt(0).any(-1, keepdim=True), -1)
    voxel_coors, point2voxel, counts = torch.unique(
        coors_clean, sorted=True, return_inverse=True, return_counts=True, dim=0)
    if voxel_coors[0, 0] < 0:  # the row of dropped points
        voxel_coors, counts, point2voxel = voxel_coors[1:], counts[1:], point2voxel - 1
    valid = point2voxel >= 0
    index, src = point2voxel[valid], feats[valid]
    shape = (voxel_coors.shape[0], feats.shape[1])
    if reduce_type == 'max':
        voxel_feats = feats.new_full(shape, float('-inf'))
        voxel_feats.scatter_reduce_(0, index[:, None].expand_as(src), src, reduce='amax')
    else:
        voxel_feats = feats.new_zeros(shape).index_add_(0, index, src)
        if reduce_type == 'mean':
            voxel_feats /= counts[:, None].to(voxel_feats.dtype)
    return voxel_feats, voxel_coors, point2voxel, counts


class _DynamicScatterCPU(Function):
    """Same contract as ``mmcv.ops.scatter_points._DynamicScatter``, for CPU tensors.

    ``return_map=True`` adds the int32 point-to-voxel map as a third output, as mmdet3d's ``dynamic_scatter_3d`` does.
    """

    @staticmethod
    def forward(ctx: Any, feats: torch.Tensor, coors: torch.Tensor, reduce_type: str = 'max',
                return_map: bool = False) -> Tuple[torch.Tensor, ...]:
        if reduce_type not in REDUCE_TYPES:
            raise ValueError(f'`reduce_type` must be one of {REDUCE_TYPES}, but got reduce_type: {reduce_type!r}')
        voxel_feats, voxel_coors, point2voxel, counts = _reduce(feats, coors, reduce_type)
        ctx.reduce_type = reduce_type
        ctx.save_for_backward(feats, voxel_feats, point2voxel, counts)
        if not return_map:
            ctx.mark_non_differentiable(voxel_coors)
            return voxel_feats, voxel_coors
        point2voxel_map = point2voxel.int()  # the CUDA kernel's dtype; -1 for dropped points
        ctx.mark_non_differentiable(voxel_coors, point2voxel_map)
        return voxel_feats, voxel_coors, point2voxel_map

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_voxel_feats: torch.Tensor, *grad_non_differentiable: Any) -> tuple:
        """sum/mean: each point gets its voxel's gradient (/count); max: the lowest-index argmax point gets it."""
        feats, voxel_feats, point2voxel, counts = ctx.saved_tensors
        grad_feats = torch.zeros_like(feats)
        if feats.shape[0] == 0 or voxel_feats.shape[0] == 0:
            return grad_feats, None, None, None
        valid = point2voxel >= 0
        index = point2voxel[valid]
        if ctx.reduce_type != 'max':
            grad = grad_voxel_feats[index]
            if ctx.reduce_type == 'mean':
                grad = grad / counts[index, None].to(grad.dtype)
            grad_feats[valid] = grad
            return grad_feats, None, None, None
        n = feats.shape[0]
        point_ids = torch.arange(n, device=feats.device)[valid, None].expand(-1, feats.shape[1])
        hit = feats[valid] == voxel_feats[index]
        candidate = torch.where(hit, point_ids, torch.full_like(point_ids, n))
        reduce_from = torch.full(voxel_feats.shape, n, dtype=torch.long, device=feats.device)
        reduce_from.scatter_reduce_(0, index[:, None].expand_as(candidate), candidate, reduce='amin')
        found = reduce_from < n
        channels = torch.arange(feats.shape[1], device=feats.device).expand_as(reduce_from)
        grad_feats[reduce_from[found], channels[found]] = grad_voxel_feats[found]
        return grad_feats, None, None, None


def dynamic_scatter_cpu(feats: torch.Tensor, coors: torch.Tensor,
                        reduce_type: str = 'max') -> Tuple[torch.Tensor, torch.Tensor]:
    """Reduce the features of points that share voxel coordinates, like ``mmcv.ops.dynamic_scatter``.

    Args:
        feats (torch.Tensor): [N, C] point features.
        coors (torch.Tensor): [N, ndim] integer voxel coordinates; points with a negative one are dropped.
        reduce_type (str): 'max', 'mean' or 'sum'. Defaults to 'max'.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: [M, C] voxel features and [M, ndim] unique coordinates (sorted).
    """
    return _DynamicScatterCPU.apply(feats, coors, reduce_type)


def make_dispatcher(original: Callable) -> Callable:
    """CPU tensors go to :func:`dynamic_scatter_cpu`, everything else to ``original``."""

    def dynamic_scatter(feats: torch.Tensor, coors: torch.Tensor,
                        reduce_type: str = 'max') -> Tuple[torch.Tensor, torch.Tensor]:
        if feats.device.type == 'cpu':
            return dynamic_scatter_cpu(feats, coors, reduce_type)
        return original(feats, coors, reduce_type)

    dynamic_scatter.__wrapped__ = original
    setattr(dynamic_scatter, _MARK, True)
    return dynamic_scatter


def apply() -> bool:
    """Install the dispatcher wherever mmcv's ``dynamic_scatter`` is bound (idempotent). Returns True."""
    import mmcv.ops
    from mmcv.ops import scatter_points

    current = scatter_points.dynamic_scatter
    dispatcher = current if getattr(current, _MARK, False) else make_dispatcher(current)
    original = dispatcher.__wrapped__
    for module in [scatter_points, mmcv.ops, *list(sys.modules.values())]:
        if getattr(module, '__dict__', {}).get('dynamic_scatter') is original:
            module.dynamic_scatter = dispatcher
    return True
