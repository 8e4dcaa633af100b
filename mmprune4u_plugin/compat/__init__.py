"""CPU shims for third-party bugs in the pinned stack (DESIGN.md §4).

One module per shim; each documents the upstream bug, the version and how it was reproduced, patches only CPU
behaviour, and is idempotent. Nothing is imported from spconv or mmcv until :func:`apply_cpu_shims` runs.

===========================  ========  ==============================================================================
shim                         package   problem
===========================  ========  ==============================================================================
``spconv_stream``            spconv    2.3.8 CPU backward calls ``torch.cuda.current_stream()``: crashes on CPU torch
``spconv_scatter_add``       spconv    2.3.8 ``scatter_add_cpu`` races with >1 thread: silently wrong sparse convs
``mmcv_dynamic_scatter``     mmcv      2.1.0 ``dynamic_scatter`` has no CPU kernel: MVX-Net's ``DynamicVFE`` fails
``mmengine_torch_load``      mmengine  0.10.7 checkpoints fail to load under torch>=2.6 (weights_only default)
``kitti_rotate_iou``         mmdet3d   1.4.0 KITTI eval imports a numba CUDA kernel: ``KittiMetric`` fails without CUDA
``minkunet_voxelize``        mmdet3d   1.4.0 MinkUNet voxelisation calls ``.cuda()``: MinkUNet / SPVCNN fail on CPU
``mmdet3d_dynamic_scatter``  mmdet3d   1.4.0 ``dynamic_scatter_3d`` has no CPU kernel: Cylinder3D's voxel labels fail
``mmcv_sparse_conv``         mmcv      2.1.0 sparse convs are CUDA-only: Cylinder3D's backbone fails; run with spconv
===========================  ========  ==============================================================================
"""
from __future__ import annotations

import importlib
import importlib.util
import warnings
from typing import List

# (shim name, package(s) that must be importable, module in this package whose ``apply()`` installs it)
SHIMS = (
    ('spconv_stream', 'spconv', 'spconv_stream'),
    ('spconv_scatter_add', 'spconv', 'spconv_scatter_add'),
    ('mmcv_dynamic_scatter', 'mmcv', 'dynamic_scatter_cpu'),
    ('mmengine_torch_load', 'mmengine', 'mmengine_torch_load'),
    ('kitti_rotate_iou', 'mmdet3d', 'kitti_rotate_iou_cpu'),
    ('minkunet_voxelize', 'mmdet3d', 'minkunet_voxelize_cpu'),
    ('mmdet3d_dynamic_scatter', 'mmdet3d', 'dynamic_scatter_3d_cpu'),
    ('mmcv_sparse_conv', ('mmcv', 'spconv'), 'mmcv_sparse_conv_cpu'),
)


def apply_cpu_shims() -> List[str]:
    """Install every shim whose package is importable; safe to call any number of times.

    Returns:
        list[str]: names of the shims in effect after the call (installed now or by an earlier call).

    Note:
        - A shim whose package (any of them) is not installed is skipped silently; one whose packages are installed
          but fail to import (e.g. an mmcv build without ops) is skipped with a warning.
        - Importing spconv and ``mmcv.ops`` costs about 1 s; this is the only place the shims import them.
    """
    applied = []
    for name, packages, module in SHIMS:
        packages = (packages,) if isinstance(packages, str) else packages
        if any(importlib.util.find_spec(package) is None for package in packages):
            continue
        try:
            importlib.import_module(f'{__name__}.{module}').apply()
        except ImportError as err:
            warnings.warn(f'mmprune4u: CPU shim {name!r} not applied, {" / ".join(packages)} failed to import: {err}')
            continue
        applied.append(name)
    return applied


__all__ = ['apply_cpu_shims', 'SHIMS']
