"""Shim: mmdet3d 1.4.0's ``dynamic_scatter_3d`` has no CPU kernel (it is mmcv's ``dynamic_scatter`` plus a map).

Upstream gap (mmdet3d 1.4.0): ``mmdet3d.models.data_preprocessors.voxelize._DynamicScatter`` is a copy of mmcv's
``_DynamicScatter`` that can also return the point-to-voxel map; it calls mmcv's ``ext_module.
dynamic_point_to_voxel_forward`` directly, which is registered for CUDA (and MLU) only. On CPU tensors it raises
``RuntimeError: dynamic_point_to_voxel_forward_impl: implementation for device cpu not found.``. Cylinder3D's data
preprocessor (``Det3DDataPreprocessor(voxel_type='cylindrical')``, ``get_voxel_seg``) calls it in training (the
voxel labels: mean of one-hot point labels) and in test (the point-to-voxel map), and ``DynamicScatter3D`` uses it.

Reproduced: ``dynamic_scatter_3d(torch.randn(5, 3), torch.randint(0, 3, (5, 3)).int(), 'mean', True)``.

Patch: ``dynamic_scatter_3d`` in ``mmdet3d.models.data_preprocessors.voxelize`` and in every loaded module that
bound it by name (``data_preprocessor`` does) becomes a dispatcher: CPU tensors go to the kernel of the mmcv shim
(:mod:`.dynamic_scatter_cpu`, same op, with its int32 map output), every other device to the original. One more
upstream slip is fixed on the CPU path only: the original's backward returns 3 gradients for its 4 inputs.
"""
from __future__ import annotations

import sys
from typing import Callable, Tuple

import torch

from .dynamic_scatter_cpu import _DynamicScatterCPU

_MARK = '_mmprune4u_shim'


def make_dispatcher(original: Callable) -> Callable:
    """CPU tensors go to the CPU port of mmcv's kernel, everything else to ``original``."""

    def dynamic_scatter_3d(feats: torch.Tensor, coors: torch.Tensor, reduce_type: str = 'max',
                           return_map: bool = False) -> Tuple[torch.Tensor, ...]:
        if feats.device.type == 'cpu':
            return _DynamicScatterCPU.apply(feats, coors, reduce_type, return_map)
        return original(feats, coors, reduce_type, return_map)

    dynamic_scatter_3d.__wrapped__ = original
    setattr(dynamic_scatter_3d, _MARK, True)
    return dynamic_scatter_3d


def apply() -> bool:
    """Install the dispatcher wherever mmdet3d's ``dynamic_scatter_3d`` is bound (idempotent). Returns True."""
    from mmdet3d.models.data_preprocessors import voxelize

    current = voxelize.dynamic_scatter_3d
    dispatcher = current if getattr(current, _MARK, False) else make_dispatcher(current)
    original = dispatcher.__wrapped__
    for module in [voxelize, *list(sys.modules.values())]:
        if getattr(module, '__dict__', {}).get('dynamic_scatter_3d') is original:
            module.dynamic_scatter_3d = dispatcher
    return True
