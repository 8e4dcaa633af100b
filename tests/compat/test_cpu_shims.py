"""The CPU shims (mmprune4u_plugin.compat), each checked against an independent reference.

Every test of a patched op fails without its shim: the sparse-conv backward raises (no CUDA stream), the sparse-conv
sums are wrong with 2 torch threads (scatter-add race) and ``dynamic_scatter`` raises on CPU (no kernel).
"""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from mmprune4u_plugin.compat import apply_cpu_shims

pytestmark = pytest.mark.filterwarnings('ignore:Using a non-tuple sequence:UserWarning')  # spconv's own .dense()
DTYPE = torch.float64  # spconv's CPU gather/scatter/mm paths dispatch float64, so the comparisons can be tight
TOL = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(scope='module', autouse=True)
def shims():
    return apply_cpu_shims()


@pytest.fixture
def spconv_nn():
    return pytest.importorskip('spconv.pytorch', reason='spconv is not installed')


@pytest.fixture
def mmcv_ops():
    pytest.importorskip('mmcv', reason='mmcv is not installed')
    return pytest.importorskip('mmcv.ops', reason='mmcv was built without ops')


@pytest.fixture
def two_threads():
    """The scatter-add race needs more than one torch thread; this machine's default is 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_apply_cpu_shims_is_idempotent(shims, spconv_nn, mmcv_ops):
    from mmcv.ops import scatter_points
    from spconv.pytorch import cppcore, ops

    before = (ops.get_current_stream, ops.SpconvOps, scatter_points.dynamic_scatter)
    assert apply_cpu_shims() == shims
    assert {'spconv_stream', 'spconv_scatter_add', 'mmcv_dynamic_scatter'} <= set(shims)
    assert (ops.get_current_stream, ops.SpconvOps, scatter_points.dynamic_scatter) == before
    assert cppcore.get_current_stream is ops.get_current_stream
    assert not hasattr(ops.get_current_stream.__wrapped__, '__wrapped__')  # wrapped once, not twice
    assert mmcv_ops.dynamic_scatter is scatter_points.dynamic_scatter
    assert scatter_points.dynamic_scatter.__wrapped__ == scatter_points._DynamicScatter.apply  # bound: ==, not is


def test_shims_leave_cuda_paths_to_the_original(monkeypatch):
    from mmprune4u_plugin.compat.dynamic_scatter_cpu import make_dispatcher
    from mmprune4u_plugin.compat.spconv_stream import make_stream_shim

    calls = []
    dispatch = make_dispatcher(lambda *args: calls.append(args[0].device.type) or 'original')
    assert dispatch(torch.zeros(2, 3, device='meta'), torch.zeros(2, 3, dtype=torch.int32, device='meta')) == 'original'
    dispatch(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int32))
    assert calls == ['meta']
    stream = make_stream_shim(lambda: 1234)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert stream() == 1234
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert stream() == 0


# ---------------------------------------------------------------- sparse convolution vs dense conv3d

def _random_voxels(batch: int, size: int, channels: int, density: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    occupied = torch.rand(batch, size, size, size, generator=gen) < density
    indices = occupied.nonzero().int().contiguous()  # nonzero() is column-major; spconv reads raw rows
    feats = torch.randn(len(indices), channels, generator=gen, dtype=DTYPE)
    return indices, feats, gen


def _densify(indices: torch.Tensor, feats: torch.Tensor, batch: int, shape) -> torch.Tensor:
    """[B, C, D, H, W], differentiable in ``feats``."""
    grid = feats.new_zeros(batch, *shape, feats.shape[1])
    grid = grid.index_put(tuple(indices.long().T), feats)
    return grid.permute(0, 4, 1, 2, 3)


@pytest.mark.parametrize('kind', ['SubMConv3d', 'SparseConv3d'])
def test_sparse_conv_forward_backward_match_dense_conv3d(kind, spconv_nn, two_threads):
    """Forward, input and weight gradients of spconv vs ``F.conv3d`` on the densified voxels, same weights.

    Without the stream shim the backward raises. The scatter-add race is timing-dependent (it needs both threads on a
    core at once), so a single end-to-end run may miss it; the next test repeats the op 200 times.
    """
    batch, size, channels = 2, 16, 32
    indices, feats, gen = _random_voxels(batch, size, channels, 0.1, seed=0)
    assert 500 < len(indices) < 1000
    if kind == 'SubMConv3d':
        conv, stride = spconv_nn.SubMConv3d(channels, channels, 3, bias=False), 1
    else:
        conv, stride = spconv_nn.SparseConv3d(channels, channels, 3, stride=2, padding=1, bias=False), 2
    conv = conv.to(DTYPE)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=DTYPE) / 10)

    # dense reference: spconv weights are [out, kD, kH, kW, in]; conv3d wants [out, in, kD, kH, kW]
    feats_ref = feats.clone().requires_grad_()
    weight_ref = conv.weight.detach().permute(0, 4, 1, 2, 3).clone().requires_grad_()
    dense = F.conv3d(_densify(indices, feats_ref, batch, [size] * 3), weight_ref, stride=stride, padding=1)
    out_shape = list(dense.shape[2:])
    if kind == 'SubMConv3d':  # outputs only at the input sites
        active = _densify(indices, torch.ones(len(indices), 1, dtype=DTYPE), batch, out_shape)
    else:  # outputs wherever the 3x3x3 stride-2 receptive field holds an active input
        occupancy = _densify(indices, torch.ones(len(indices), 1, dtype=DTYPE), batch, [size] * 3)
        active = (F.conv3d(occupancy, torch.ones(1, 1, 3, 3, 3, dtype=DTYPE), stride=2, padding=1) > 0).to(DTYPE)
    probe = torch.randn(dense.shape, generator=gen, dtype=DTYPE)
    (dense * active * probe).sum().backward()

    for _ in range(3):
        conv.weight.grad = None
        feats_sp = feats.clone().requires_grad_()
        out = conv(spconv_nn.SparseConvTensor(feats_sp, indices, [size] * 3, batch))
        (out.features * probe.permute(0, 2, 3, 4, 1)[tuple(out.indices.long().T)]).sum().backward()

        assert list(out.spatial_shape) == out_shape
        out_sites = _densify(out.indices, torch.ones(len(out.indices), 1, dtype=DTYPE), batch, out_shape)
        assert torch.equal(out_sites, active)
        torch.testing.assert_close(out.dense(), dense * active, **TOL)
        torch.testing.assert_close(feats_sp.grad, feats_ref.grad, **TOL)
        torch.testing.assert_close(conv.weight.grad.permute(0, 4, 1, 2, 3), weight_ref.grad, **TOL)


def test_scatter_add_cpu_is_exact_with_two_threads(spconv_nn, two_threads):
    """``SpconvOps.scatter_add_cpu`` as ``spconv.pytorch.ops`` calls it: ``out[inds[i]] += inp[i]`` for i < len(inds).

    The race needs both OpenMP threads running at once, so one call may get lucky: 200 calls of 2000 rows were wrong
    upstream in 8/8 trials (integer-valued features keep the expected sums exact).
    """
    from spconv.pytorch import ops
    from spconv.pytorch.cppcore import torch_tensor_to_tv

    gen = torch.Generator().manual_seed(0)
    rows, channels, nhot, calls = 2500, 32, 2000, 200
    out = torch.zeros(rows, channels, dtype=DTYPE)
    inp = torch.randint(-8, 8, (rows, channels), generator=gen).to(DTYPE)  # longer than inds, like spconv's buffers
    inds = torch.randperm(rows, generator=gen)[:nhot].int()
    out_tv, inp_tv, inds_tv = map(torch_tensor_to_tv, (out, inp, inds))
    for _ in range(calls):
        ops.SpconvOps.scatter_add_cpu(out_tv, inp_tv, inds_tv)
    expected = torch.zeros_like(out)
    expected[inds.long()] = calls * inp[:nhot]
    assert torch.equal(out, expected)


# ---------------------------------------------------------------- dynamic_scatter vs a loop over points

def _loop_scatter(feats: torch.Tensor, coors: torch.Tensor, reduce_type: str):
    """Group points by coordinate tuple (dropping any with a negative coordinate), sorted; reduce with torch ops."""
    groups = {}
    for i, key in enumerate(map(tuple, coors.tolist())):
        if min(key) >= 0:
            groups.setdefault(key, []).append(i)
    keys = sorted(groups)
    rows = []
    for key in keys:
        members = feats[groups[key]]
        rows.append({'max': lambda m: m.max(0).values, 'mean': lambda m: m.mean(0), 'sum': lambda m: m.sum(0)}
                    [reduce_type](members))
    return torch.stack(rows), torch.tensor(keys, dtype=coors.dtype)


def _points(n: int = 60, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, 5, generator=gen, dtype=DTYPE)
    coors = torch.randint(0, 3, (n, 3), generator=gen, dtype=torch.int32)
    coors[::11, 1] = -1  # dropped points
    return feats, coors, gen


@pytest.mark.parametrize('reduce_type', ['max', 'mean', 'sum'])
def test_dynamic_scatter_forward_backward_match_loop(reduce_type, mmcv_ops):
    feats, coors, gen = _points()
    feats_op = feats.clone().requires_grad_()
    voxel_feats, voxel_coors = mmcv_ops.dynamic_scatter(feats_op, coors, reduce_type)
    feats_ref = feats.clone().requires_grad_()
    ref_feats, ref_coors = _loop_scatter(feats_ref, coors, reduce_type)

    assert voxel_coors.dtype == torch.int32 and torch.equal(voxel_coors, ref_coors)
    torch.testing.assert_close(voxel_feats, ref_feats, **TOL)
    probe = torch.randn(ref_feats.shape, generator=gen, dtype=DTYPE)
    (voxel_feats * probe).sum().backward()
    (ref_feats * probe).sum().backward()
    torch.testing.assert_close(feats_op.grad, feats_ref.grad, **TOL)
    assert torch.all(feats_op.grad[::11] == 0)


@pytest.mark.parametrize('reduce_type', ['mean', 'sum'])
def test_dynamic_scatter_gradcheck(reduce_type, mmcv_ops):
    feats, coors, _ = _points(n=20)
    feats.requires_grad_()
    assert torch.autograd.gradcheck(lambda f: mmcv_ops.dynamic_scatter(f, coors, reduce_type)[0], (feats,))


def test_dynamic_scatter_max_ties_go_to_first_point(mmcv_ops):
    """mmcv's CUDA backward gives a tied maximum's gradient to the lowest point index only."""
    feats = torch.tensor([[1.0, 2.0], [1.0, 5.0], [0.0, 5.0]], dtype=DTYPE, requires_grad=True)
    coors = torch.zeros(3, 3, dtype=torch.int32)
    voxel_feats, _ = mmcv_ops.dynamic_scatter(feats, coors, 'max')
    voxel_feats.sum().backward()
    assert feats.grad.tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]


def test_dynamic_scatter_module_with_batch_coors(mmcv_ops):
    feats, coors, _ = _points()
    coors = torch.cat([torch.arange(len(coors), dtype=torch.int32)[:, None] % 2, coors.abs()], 1)
    coors = coors[coors[:, 0].argsort(stable=True)]  # DynamicScatter takes batch_size from the last row
    voxel_feats, voxel_coors = mmcv_ops.DynamicScatter([1, 1, 1], [0, 0, 0, 3, 3, 3], True)(feats, coors)
    ref_feats, ref_coors = _loop_scatter(feats, coors, 'mean')
    assert torch.equal(voxel_coors, ref_coors)
    torch.testing.assert_close(voxel_feats, ref_feats, **TOL)


def test_mmdet3d_dynamic_vfe_runs_on_cpu(mmcv_ops):
    """MVX-Net's DynamicVFE imports mmcv's DynamicScatter by name; its max-reduced output matches the loop."""
    voxel_encoders = pytest.importorskip('mmdet3d.models.voxel_encoders', reason='mmdet3d is not installed')
    torch.manual_seed(0)
    vfe = voxel_encoders.DynamicVFE(in_channels=4, feat_channels=[8], voxel_size=(1.0, 1.0, 1.0),
                                    point_cloud_range=(0, 0, 0, 4, 4, 4)).eval()
    points = torch.rand(50, 4) * 4
    coors = torch.cat([torch.zeros(50, 1), points[:, [2, 1, 0]].floor()], 1).int()
    voxel_feats, voxel_coors = vfe(points, coors)
    ref_feats, ref_coors = _loop_scatter(vfe.vfe_layers[0](points), coors, 'max')
    assert torch.equal(voxel_coors, ref_coors)
    torch.testing.assert_close(voxel_feats, ref_feats)
    voxel_feats.sum().backward()
    assert all(p.grad is not None for p in vfe.parameters() if p.requires_grad)


def test_loop_reference_sanity():
    """The loop reference itself, on a case small enough to check by hand."""
    feats = torch.tensor([[1.0], [3.0], [5.0]])
    coors = torch.tensor([[1, 0, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.int32)
    voxel_feats, voxel_coors = _loop_scatter(feats, coors, 'mean')
    assert voxel_coors.tolist() == [[0, 0, 0], [1, 0, 0]] and voxel_feats.flatten().tolist() == [3.0, 3.0]


def test_dense_reference_sanity():
    """The densify helper puts each feature row at its (b, z, y, x) site."""
    indices = torch.tensor(list(itertools.product([0], [0, 1], [1], [0, 2])), dtype=torch.int32)
    feats = torch.arange(8.0).view(4, 2)
    grid = _densify(indices, feats, 1, [2, 2, 3])
    assert grid.shape == (1, 2, 2, 2, 3) and float(grid.sum()) == float(feats.sum())
    assert grid[0, :, 1, 1, 2].tolist() == feats[3].tolist()
