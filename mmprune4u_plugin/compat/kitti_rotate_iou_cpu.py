"""Shim: mmdet3d 1.4.0's KITTI evaluation cannot run without CUDA (``rotate_iou`` fails at import).

Upstream problem (mmdet3d 1.4.0, numba 0.68.1): ``bev_box_overlap`` and ``d3_box_overlap`` in
``mmdet3d/evaluation/functional/kitti_utils/eval.py`` (so ``KittiMetric`` and ``kitti_eval``) run
``from .rotate_iou import rotate_iou_gpu_eval``. ``rotate_iou.py`` declares its kernel with ``numba.cuda.jit`` and an
explicit signature, which compiles at import time, so on a machine without a CUDA driver the import raises
``numba.cuda.cudadrv.error.CudaSupportError: CUDA driver library cannot be found`` and no KITTI metric can be computed.

Reproduced: ``bev_box_overlap(np.zeros((1, 5)), np.zeros((1, 5)))`` from that module, CPU-only machine.

Patch: when ``numba.cuda.is_available()`` is False (the kernel is compiled by numba, so numba's driver + NVVM check
is the one that decides; ``torch.cuda`` is irrelevant: a CPU-only torch can sit next to a working numba CUDA and vice
versa), a meta-path finder serves that one module name with a CPU replacement whose ``rotate_iou_gpu_eval`` has the
same signature and results: (N, K) float32, entry [i, j] for ``boxes[i]`` and ``query_boxes[j]`` given as
[x, y, w, h, angle] with the kernel's corner convention (``rbbox_to_corners``: positive angle turns clockwise in
x-right/y-up axes). ``criterion``: -1 IoU, 0 intersection / area(query_boxes[j]), 1 intersection / area(boxes[i]),
anything else the intersection area (the kernel calls ``devRotateIoUEval(query_box, box)``, so 0 and 1 refer to the
query box and the box in that order). The finder, unlike a module put into ``sys.modules`` by hand, lets the import
system import the parent packages, set the ``kitti_utils.rotate_iou`` attribute and a ``__spec__``; a module that is
already imported (CUDA present, or the numba CUDA simulator) is never replaced.

Intersections come from ``mmcv.ops.box_iou_rotated`` (CPU op, ``clockwise=False`` is the kernel's convention) in
``iof`` mode times the box area, for the pairs whose circumscribed circles meet (the rest are disjoint); the criteria
are then formed with the kernel's formulas in float32. One difference: for some exactly identical boxes the kernel
returns 0 or a fraction of the overlap (float32 rounding makes its inclusive corner test fail by an ulp and its
strict edge-crossing test never fires on shared edges; seen in numba's CUDA simulator); this shim returns the exact
overlap there.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from typing import Optional

import numpy as np

TARGET = 'mmdet3d.evaluation.functional.kitti_utils.rotate_iou'
_MARK = '_mmprune4u_shim'


def _needs_patch() -> bool:
    """True when numba cannot compile the CUDA kernel (no driver, no NVVM, or no numba)."""
    try:
        from numba import cuda
    except ImportError:
        return True
    return not cuda.is_available()


def _intersection(boxes: np.ndarray, query_boxes: np.ndarray) -> np.ndarray:
    """[N, K] float32 overlap areas of rotated rectangles [x, y, w, h, angle] (kernel convention)."""
    import torch
    from mmcv.ops import box_iou_rotated

    inter = np.zeros((boxes.shape[0], query_boxes.shape[0]), dtype=np.float32)
    # a negative w or h spans the same rectangle in the kernel (its area uses abs), mmcv expects sizes
    boxes, query_boxes = boxes.copy(), query_boxes.copy()
    boxes[:, 2:4], query_boxes[:, 2:4] = np.abs(boxes[:, 2:4]), np.abs(query_boxes[:, 2:4])
    b64, q64 = boxes.astype(np.float64), query_boxes.astype(np.float64)
    radius_b, radius_q = 0.5 * np.hypot(b64[:, 2], b64[:, 3]), 0.5 * np.hypot(q64[:, 2], q64[:, 3])
    dist2 = (b64[:, None, 0] - q64[None, :, 0])**2 + (b64[:, None, 1] - q64[None, :, 1])**2
    reach = radius_b[:, None] + radius_q[None, :]
    rows, cols = np.nonzero(dist2 <= reach * reach * (1 + 1e-6) + 1e-12)  # circles apart => boxes disjoint
    if rows.size:
        iof = box_iou_rotated(torch.from_numpy(boxes[rows]), torch.from_numpy(query_boxes[cols]),
                              mode='iof', aligned=True, clockwise=False).numpy()
        inter[rows, cols] = iof * (boxes[rows, 2] * boxes[rows, 3])
    return inter


def rotate_iou_cpu_eval(boxes: np.ndarray, query_boxes: np.ndarray, criterion: int = -1,
                        device_id: int = 0) -> np.ndarray:
    """CPU drop-in for mmdet3d's ``rotate_iou_gpu_eval`` (same arguments; ``device_id`` is ignored).

    Args:
        boxes (np.ndarray): [N, 5] rotated BEV boxes [x, y, w, h, angle], angle clockwise when positive.
        query_boxes (np.ndarray): [K, 5] boxes in the same format.
        criterion (int): -1 IoU, 0 intersection / area(query box), 1 intersection / area(box), else intersection.
        device_id (int): unused; kept for the signature.

    Returns:
        np.ndarray: [N, K] float32.
    """
    boxes = np.asarray(boxes).astype(np.float32)
    query_boxes = np.asarray(query_boxes).astype(np.float32)
    n, k = boxes.shape[0], query_boxes.shape[0]
    if n == 0 or k == 0:
        return np.zeros((n, k), dtype=np.float32)
    inter = _intersection(boxes, query_boxes)
    area_box = (boxes[:, 2] * boxes[:, 3])[:, None]
    area_query = (query_boxes[:, 2] * query_boxes[:, 3])[None, :]
    with np.errstate(divide='ignore', invalid='ignore'):  # zero-area boxes give inf/nan, as in the kernel
        if criterion == -1:
            return (inter / (area_query + area_box - inter)).astype(np.float32)
        if criterion == 0:
            return (inter / area_query).astype(np.float32)
        if criterion == 1:
            return (inter / area_box).astype(np.float32)
    return inter


class _Loader(importlib.abc.Loader):
    """Fills the ``rotate_iou`` module with the CPU implementation."""

    def create_module(self, spec):
        return None  # default module creation

    def exec_module(self, module) -> None:
        module.__doc__ = (f'CPU replacement installed by {__name__} (no CUDA for numba): '
                          '``rotate_iou_gpu_eval`` runs on CPU.')
        module.rotate_iou_gpu_eval = rotate_iou_cpu_eval
        setattr(module, _MARK, True)


class _Finder(importlib.abc.MetaPathFinder):
    """Answers only for :data:`TARGET`; every other import goes to the next finder."""

    def find_spec(self, fullname: str, path=None, target=None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != TARGET:
            return None
        return importlib.util.spec_from_loader(fullname, _Loader(), origin=__file__)


def apply() -> bool:
    """Install the finder when numba has no CUDA (idempotent); returns True when the CPU module is in effect."""
    import mmcv.ops  # noqa: F401  (raises ImportError for an mmcv built without ops)

    loaded = sys.modules.get(TARGET)
    if loaded is not None:
        return getattr(loaded, _MARK, False)
    if not _needs_patch():
        return False
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    return True
