"""The KITTI ``rotate_iou`` CPU shim against mmdet3d's own numba kernel, run in numba's CUDA simulator.

The reference comes from a subprocess with ``NUMBA_ENABLE_CUDASIM=1`` that imports the unmodified
``mmdet3d.evaluation.functional.kitti_utils.rotate_iou`` and ``eval.d3_box_overlap``. Without the shim (no CUDA for
numba) the comparisons fail: ``eval.bev_box_overlap`` / ``d3_box_overlap`` raise ``CudaSupportError`` on import.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip('mmdet3d')
pytest.importorskip('mmcv.ops', reason='mmcv was built without ops')

from mmprune4u_plugin.compat import apply_cpu_shims, kitti_rotate_iou_cpu  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)
# The kernel computes corners in float32 absolute coordinates: around (25, 60) its own error reaches ~1e-4 (the shim
# shifts to the box centre, as mmcv does). There the reference is the kernel on the same boxes moved to the origin.
FAR_TOL = dict(rtol=1e-3, atol=5e-4)
FAR_SHIFT = np.array([25.0, 60.0])
N_IDENTICAL = 4  # boxes[i] == query[i] for i < N_IDENTICAL
FAR_BOXES, FAR_QUERY = slice(40, 48), slice(30, 36)  # the cluster of KITTI-sized cars far from the origin

REFERENCE = r'''
import sys
import warnings

import numpy as np
from numba import config

assert config.ENABLE_CUDASIM, 'the reference must run in the CUDA simulator'
warnings.simplefilter('ignore')
from mmdet3d.evaluation.functional.kitti_utils import rotate_iou
from mmdet3d.evaluation.functional.kitti_utils.eval import d3_box_overlap

# The simulator runs each CUDA thread as a Python thread and swaps this module's globals; the kernel's first numpy
# warning (0/0 in sort_vertex_in_convex_polygon) would add __warningregistry__ to them while another thread iterates
# them ("dictionary changed size during iteration"). Creating it up front avoids the race.
rotate_iou.__warningregistry__ = {}
inp = np.load(sys.argv[1])
out = {f'bev{c}': rotate_iou.rotate_iou_gpu_eval(inp['boxes'], inp['query'], c) for c in (-1, 0, 1, 2)}
out.update({f'd3{c}': d3_box_overlap(inp['boxes3d'], inp['query3d'], c) for c in (-1, 0, 1)})
out.update({f'near{c}': rotate_iou.rotate_iou_gpu_eval(inp['far_boxes'], inp['far_query'], c) for c in (-1, 0, 1, 2)})
np.savez(sys.argv[2], **out)
'''


def _random_boxes(rng, n, low, high, size=(0.5, 3.0)):
    return np.concatenate([rng.uniform(low, high, (n, 2)), rng.uniform(*size, (n, 2)),
                           rng.uniform(-np.pi, np.pi, (n, 1))], axis=1)


def _cases():
    """[N, 5] boxes and [K, 5] query boxes [x, y, w, h, angle] mixing every kind of pair, plus 3D camera boxes."""
    rng = np.random.default_rng(20240611)
    boxes, query = _random_boxes(rng, 48, -3, 3), _random_boxes(rng, 36, -3, 3)  # overlapping and disjoint
    query[:N_IDENTICAL] = boxes[:N_IDENTICAL]  # identical
    boxes[4], query[4] = [0.3, -0.2, 3.0, 2.0, 0.4], [0.5, -0.1, 0.4, 0.2, -1.1]  # query strictly inside box
    boxes[5], query[5] = [-1.0, 1.0, 0.5, 0.3, 2.0], [-1.1, 1.0, 2.5, 2.0, 0.7]  # box strictly inside query
    boxes[6], query[6] = [0.0, 0.0, 4.0, 0.5, 0.3], [0.0, 0.0, 4.0, 0.5, 0.3 + np.pi / 2]  # cross
    boxes[7], query[7] = [1.0, 1.0, 2.0, 1.0, 0.5], [2.2, 1.6, 2.0, 1.0, 0.5]  # same angle, shifted
    boxes[8] = [-1000.0, -1000.0, -1.0, -1.0, -10.0]  # a KITTI DontCare box
    boxes[9], query[8] = [50.0, 50.0, 2.0, 2.0, 0.0], [-50.0, 3.0, 1.0, 4.0, 1.0]  # far from everything
    # KITTI-sized cars in camera BEV (x, z) far from the origin, in one cluster so that many overlap
    boxes[FAR_BOXES], query[FAR_QUERY] = (_random_boxes(rng, 8, 0, 4, (1.5, 4.5)),
                                          _random_boxes(rng, 6, 0, 4, (1.5, 4.5)))
    far_boxes, far_query = boxes[FAR_BOXES].copy(), query[FAR_QUERY].copy()  # the cluster, at the origin
    boxes[FAR_BOXES, :2] += FAR_SHIFT
    query[FAR_QUERY, :2] += FAR_SHIFT

    def to_3d(bev):  # camera [x, y, z, l, h, w, ry]; the BEV part is columns [0, 2, 3, 5, 6]
        y, h = rng.uniform(1.0, 2.0, len(bev)), rng.uniform(1.2, 2.0, len(bev))
        return np.stack([bev[:, 0], y, bev[:, 1], bev[:, 2], h, bev[:, 3], bev[:, 4]], axis=1)

    return dict(boxes=boxes, query=query, boxes3d=to_3d(boxes), query3d=to_3d(query), far_boxes=far_boxes,
                far_query=far_query)


@pytest.fixture(scope='module')
def cases():
    return _cases()


@pytest.fixture(scope='module')
def reference(cases, tmp_path_factory):
    """Outputs of mmdet3d's unmodified numba CUDA kernel, computed by numba's CUDA simulator."""
    folder = tmp_path_factory.mktemp('kitti_rotate_iou')
    np.savez(folder / 'inputs.npz', **cases)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM='1')
    proc = subprocess.run([sys.executable, '-c', REFERENCE, str(folder / 'inputs.npz'), str(folder / 'ref.npz')],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(folder / 'ref.npz'))


@pytest.fixture(scope='module')
def shim():
    applied = apply_cpu_shims()
    if not kitti_rotate_iou_cpu._needs_patch():
        pytest.skip('numba has CUDA here: the original kernel is in effect, the shim is not installed')
    assert 'kitti_rotate_iou' in applied
    return applied


def _masks(shape):
    """(pairs compared at TOL, the far cluster's pairs); identical pairs are in neither."""
    near = np.ones(shape, dtype=bool)
    near[np.arange(N_IDENTICAL), np.arange(N_IDENTICAL)] = False
    far = np.zeros(shape, dtype=bool)
    far[FAR_BOXES, FAR_QUERY] = True
    return near & ~far, far


def test_original_module_needs_cuda():
    """The upstream bug: executing rotate_iou.py compiles the CUDA kernel, which raises without a CUDA driver."""
    if not kitti_rotate_iou_cpu._needs_patch():
        pytest.skip('numba has CUDA here')
    from numba.cuda.cudadrv.error import CudaSupportError, NvvmSupportError
    origin = importlib.util.find_spec('mmdet3d.evaluation.functional.kitti_utils').submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location('_original_rotate_iou', os.path.join(origin, 'rotate_iou.py'))
    with pytest.raises((CudaSupportError, NvvmSupportError)):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))  # not registered in sys.modules


@pytest.mark.parametrize('criterion', [-1, 0, 1, 2])
def test_bev_box_overlap_matches_numba_kernel(shim, cases, reference, criterion):
    from mmdet3d.evaluation.functional.kitti_utils.eval import bev_box_overlap

    out = bev_box_overlap(cases['boxes'], cases['query'], criterion)
    ref = reference[f'bev{criterion}']
    assert out.dtype == ref.dtype == np.float32 and out.shape == ref.shape == (48, 36)
    near, far = _masks(out.shape)
    np.testing.assert_allclose(out[near], ref[near], **TOL)
    assert (ref[near] > 0).mean() > 0.1 and (ref[near] == 0).mean() > 0.5  # both overlapping and disjoint pairs
    np.testing.assert_allclose(out[far], reference[f'near{criterion}'].ravel(), **TOL)  # kernel, at the origin
    np.testing.assert_allclose(out[far], ref[far], **FAR_TOL)  # kernel, float32 far from the origin
    assert (ref[far] > 0).sum() >= 20
    assert np.all(out[8] == 0)  # DontCare box
    # identical boxes: the exact overlap (the kernel itself returns 0 or a fraction for some, see the shim)
    area = cases['boxes'][:N_IDENTICAL, 2] * cases['boxes'][:N_IDENTICAL, 3]
    expected = area if criterion == 2 else np.ones(N_IDENTICAL)
    np.testing.assert_allclose(np.diag(out)[:N_IDENTICAL], expected, **TOL)


def test_d3_box_overlap_matches_numba_kernel(shim, cases, reference):
    from mmdet3d.evaluation.functional.kitti_utils.eval import d3_box_overlap

    near, far = _masks((48, 36))
    for criterion in (-1, 0, 1):
        out, ref = d3_box_overlap(cases['boxes3d'], cases['query3d'], criterion), reference[f'd3{criterion}']
        assert out.dtype == np.float32
        np.testing.assert_allclose(out[near], ref[near], **TOL)
        np.testing.assert_allclose(out[far], ref[far], **FAR_TOL)
        assert (out[near] > 0).sum() > 100


def test_rotate_iou_cpu_eval_edge_cases(shim):
    rotate_iou = importlib.import_module(kitti_rotate_iou_cpu.TARGET)
    box = np.array([[0.0, 0.0, 2.0, 1.0, 0.3]])
    for n, k in ((0, 1), (1, 0), (0, 0)):
        out = rotate_iou.rotate_iou_gpu_eval(np.repeat(box, n, 0), np.repeat(box, k, 0), -1)
        assert out.shape == (n, k) and out.dtype == np.float32
    # the kernel's rectangle does not depend on the sign of w and h (areas keep the sign, as in the kernel)
    flipped = box * [1, 1, -1, -1, 1]
    np.testing.assert_allclose(rotate_iou.rotate_iou_gpu_eval(flipped, box, 2), [[2.0]], **TOL)


def test_apply_is_idempotent(shim):
    import mmdet3d.evaluation.functional.kitti_utils as kitti_utils
    from mmdet3d.evaluation.functional.kitti_utils.eval import bev_box_overlap

    bev_box_overlap(np.zeros((1, 5)), np.zeros((1, 5)))  # import the module through eval.py
    module = sys.modules[kitti_rotate_iou_cpu.TARGET]
    finders = sum(isinstance(f, kitti_rotate_iou_cpu._Finder) for f in sys.meta_path)
    assert kitti_rotate_iou_cpu.apply() and kitti_rotate_iou_cpu.apply()
    assert apply_cpu_shims() == shim
    assert sys.modules[kitti_rotate_iou_cpu.TARGET] is module is kitti_utils.rotate_iou
    assert module.rotate_iou_gpu_eval is kitti_rotate_iou_cpu.rotate_iou_cpu_eval
    assert finders == 1 == sum(isinstance(f, kitti_rotate_iou_cpu._Finder) for f in sys.meta_path)
