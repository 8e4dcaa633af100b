"""The CPU shims (mmprune4u_plugin.compat), each checked against an independent reference.

Every test of a patched op fails without its shim: the sparse-conv backward raises (no CUDA stream), the sparse-conv
sums are wrong with 2 torch threads (scatter-add race); mmcv's ``dynamic_scatter`` and sparse convs and mmdet3d's
``dynamic_scatter_3d`` raise on CPU (no kernels).
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


# ---------------------------------------------------------------- mmcv's sparse convs on CPU (spconv) vs dense conv3d

MMCV_CONVS = {  # case -> (mmcv class, kwargs, the dense conv's stride and padding)
    'subm_3x3x3': ('SubMConv3d', dict(kernel_size=3, padding=1), 1, (1, 1, 1)),
    # Cylinder3D's asymmetric kernels, with its padding=1, which a submanifold conv ignores (as mmcv's CUDA one does)
    'subm_1x3x3': ('SubMConv3d', dict(kernel_size=(1, 3, 3), padding=1), 1, (0, 1, 1)),
    'strided': ('SparseConv3d', dict(kernel_size=3, stride=2, padding=1), 2, (1, 1, 1)),
    'strided_221': ('SparseConv3d', dict(kernel_size=3, stride=(2, 2, 1), padding=1), (2, 2, 1), (1, 1, 1)),
}


def _mmcv_conv(mmcv_ops, name: str, cin: int, cout: int, gen, **kwargs):
    conv = getattr(mmcv_ops, name)(cin, cout, **kwargs).to(DTYPE)
    with torch.no_grad():
        for param in conv.parameters():
            param.copy_(torch.randn(param.shape, generator=gen, dtype=DTYPE) / 4)
    return conv


def _dense_weight(conv) -> torch.Tensor:
    """mmcv's [*kernel, in, out] weight as conv3d's [out, in, *kernel]."""
    return conv.weight.detach().permute(4, 3, 0, 1, 2).clone()


def _probe_sites(probe: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return probe.permute(0, 2, 3, 4, 1)[tuple(indices.long().T)]


@pytest.mark.parametrize('case', sorted(MMCV_CONVS))
def test_mmcv_sparse_conv_forward_backward_match_dense_conv3d(case, mmcv_ops, spconv_nn, two_threads):
    """mmcv's module on CPU features: same outputs, sites and gradients (input, weight in mmcv's layout, bias)."""
    name, kwargs, stride, padding = MMCV_CONVS[case]
    batch, size, cin, cout = 2, 12, 8, 6
    indices, feats, gen = _random_voxels(batch, size, cin, 0.1, seed=1)
    conv = _mmcv_conv(mmcv_ops, name, cin, cout, gen, indice_key='k', **kwargs)
    assert tuple(conv.weight.shape) == (*conv.kernel_size, cin, cout)  # mmcv's layout and keys, untouched
    assert set(conv.state_dict()) == {'weight', 'bias'}

    feats_ref = feats.clone().requires_grad_()
    weight_ref, bias_ref = _dense_weight(conv).requires_grad_(), conv.bias.detach().clone().requires_grad_()
    dense = F.conv3d(_densify(indices, feats_ref, batch, [size] * 3), weight_ref, bias_ref, stride=stride,
                     padding=padding)
    occupancy = _densify(indices, torch.ones(len(indices), 1, dtype=DTYPE), batch, [size] * 3)
    if name == 'SubMConv3d':
        active = occupancy
    else:
        ones = torch.ones(1, 1, *conv.kernel_size, dtype=DTYPE)
        active = (F.conv3d(occupancy, ones, stride=stride, padding=padding) > 0).to(DTYPE)
    probe = torch.randn(dense.shape, generator=gen, dtype=DTYPE)
    (dense * active * probe).sum().backward()

    feats_sp = feats.clone().requires_grad_()
    x = mmcv_ops.SparseConvTensor(feats_sp, indices, [size] * 3, batch)
    out = conv(x)
    (out.features * _probe_sites(probe, out.indices)).sum().backward()

    assert isinstance(out, mmcv_ops.SparseConvTensor) and list(out.spatial_shape) == list(dense.shape[2:])
    out_sites = _densify(out.indices, torch.ones(len(out.indices), 1, dtype=DTYPE), batch, list(dense.shape[2:]))
    assert torch.equal(out_sites, active)
    torch.testing.assert_close(out.dense(), dense * active, **TOL)
    torch.testing.assert_close(feats_sp.grad, feats_ref.grad, **TOL)
    torch.testing.assert_close(conv.weight.grad.permute(4, 3, 0, 1, 2), weight_ref.grad, **TOL)
    torch.testing.assert_close(conv.bias.grad, bias_ref.grad, **TOL)
    assert 'k' in x.indice_dict and out.indice_dict is x.indice_dict  # the rulebook, for layers sharing the key


def test_mmcv_inverse_conv_matches_dense_conv_transpose3d(mmcv_ops, spconv_nn, two_threads):
    """``SparseInverseConv3d`` maps the strided conv of its ``indice_key`` back onto that conv's input sites."""
    batch, size, cin, cmid, cout = 2, 12, 4, 8, 5
    indices, feats, gen = _random_voxels(batch, size, cin, 0.1, seed=2)
    down = _mmcv_conv(mmcv_ops, 'SparseConv3d', cin, cmid, gen, kernel_size=3, stride=2, padding=1,
                      indice_key='down', bias=False)
    up = _mmcv_conv(mmcv_ops, 'SparseInverseConv3d', cmid, cout, gen, kernel_size=3, indice_key='down')
    with torch.no_grad():
        y = down(mmcv_ops.SparseConvTensor(feats, indices, [size] * 3, batch))
    y_feats = y.features.clone().requires_grad_()
    y_leaf = mmcv_ops.SparseConvTensor(y_feats, y.indices, y.spatial_shape, batch)
    y_leaf.indice_dict = y.indice_dict
    z = up(y_leaf)

    y_ref = y.features.clone().requires_grad_()
    y_size = y.spatial_shape[0]
    extra = size - ((y_size - 1) * 2 - 2 + 3)  # output_padding that gives back the input's size
    weight_ref = up.weight.detach().permute(3, 4, 0, 1, 2).clone().requires_grad_()  # [in, out, *kernel]
    dense = F.conv_transpose3d(_densify(y.indices, y_ref, batch, [y_size] * 3), weight_ref, up.bias.detach(),
                               stride=2, padding=1, output_padding=extra)
    active = _densify(indices, torch.ones(len(indices), 1, dtype=DTYPE), batch, [size] * 3)
    probe = torch.randn(dense.shape, generator=gen, dtype=DTYPE)
    (dense * active * probe).sum().backward()
    (z.features * _probe_sites(probe, z.indices)).sum().backward()

    assert torch.equal(z.indices, indices) and list(z.spatial_shape) == [size] * 3
    torch.testing.assert_close(z.dense(), dense * active, **TOL)
    torch.testing.assert_close(y_feats.grad, y_ref.grad, **TOL)
    torch.testing.assert_close(up.weight.grad.permute(3, 4, 0, 1, 2), weight_ref.grad, **TOL)


def test_mmcv_rulebook_is_reused_by_key_without_a_kernel_check(mmcv_ops, spconv_nn, two_threads):
    """mmcv's rule, kept on CPU: Cylinder3D's 3x1x3 conv after a 1x3x3 one with the same key runs on the 1x3x3
    neighbourhoods, kernel offset k of its weight on offset k of theirs (spconv's own modules would raise)."""
    batch, size, c = 1, 10, 4
    indices, feats, gen = _random_voxels(batch, size, c, 0.15, seed=3)
    first = _mmcv_conv(mmcv_ops, 'SubMConv3d', c, c, gen, kernel_size=(1, 3, 3), padding=1, indice_key='bef',
                       bias=False)
    second = _mmcv_conv(mmcv_ops, 'SubMConv3d', c, c, gen, kernel_size=(3, 1, 3), padding=1, indice_key='bef',
                        bias=False)
    active = _densify(indices, torch.ones(len(indices), 1, dtype=DTYPE), batch, [size] * 3)
    with torch.no_grad():
        y = first(mmcv_ops.SparseConvTensor(feats, indices, [size] * 3, batch))
        shared = second(y)
        alone = second(mmcv_ops.SparseConvTensor(y.features, y.indices, y.spatial_shape, batch))
    as_1x3x3 = second.weight.detach().reshape(1, 3, 3, c, c).permute(4, 3, 0, 1, 2)
    torch.testing.assert_close(shared.dense(), F.conv3d(y.dense(), as_1x3x3, padding=(0, 1, 1)) * active, **TOL)
    torch.testing.assert_close(alone.dense(), F.conv3d(y.dense(), _dense_weight(second), padding=(1, 0, 1)) * active,
                               **TOL)


def test_mmcv_sparse_conv_dispatch_leaves_other_devices_and_1x1_to_mmcv():
    from types import SimpleNamespace

    from mmprune4u_plugin.compat.mmcv_sparse_conv_cpu import make_dispatcher

    forward = make_dispatcher(lambda self, inp: 'mmcv')
    assert forward(SimpleNamespace(conv1x1=False), SimpleNamespace(features=torch.zeros(2, 3, device='meta'))) == 'mmcv'
    assert forward(SimpleNamespace(conv1x1=True), SimpleNamespace(features=torch.zeros(2, 3))) == 'mmcv'


def test_new_shims_are_idempotent(shims, mmcv_ops, spconv_nn):
    voxelize = pytest.importorskip('mmdet3d.models.data_preprocessors.voxelize', reason='mmdet3d is not installed')
    from mmcv.ops.sparse_conv import SparseConvolution
    from mmdet3d.models.data_preprocessors import data_preprocessor

    assert {'mmcv_sparse_conv', 'mmdet3d_dynamic_scatter'} <= set(shims)
    before = (SparseConvolution.forward, voxelize.dynamic_scatter_3d)
    assert apply_cpu_shims() == shims
    assert (SparseConvolution.forward, voxelize.dynamic_scatter_3d) == before
    assert not hasattr(SparseConvolution.forward.__wrapped__, '__wrapped__')
    assert data_preprocessor.dynamic_scatter_3d is voxelize.dynamic_scatter_3d  # the name it imported, rebound
    assert voxelize.dynamic_scatter_3d.__wrapped__ == voxelize._DynamicScatter.apply


# ---------------------------------------------------------------- mmdet3d's dynamic_scatter_3d vs a loop over points

@pytest.mark.parametrize('reduce_type', ['max', 'mean', 'sum'])
def test_mmdet3d_dynamic_scatter_3d_matches_loop(reduce_type):
    voxelize = pytest.importorskip('mmdet3d.models.data_preprocessors.voxelize', reason='mmdet3d is not installed')
    feats, coors, gen = _points()
    feats_op = feats.clone().requires_grad_()
    voxel_feats, voxel_coors, point2voxel = voxelize.dynamic_scatter_3d(feats_op, coors, reduce_type, True)
    feats_ref = feats.clone().requires_grad_()
    ref_feats, ref_coors = _loop_scatter(feats_ref, coors, reduce_type)
    keys = list(map(tuple, ref_coors.tolist()))

    assert torch.equal(voxel_coors, ref_coors)
    assert point2voxel.dtype == torch.int32  # as the CUDA kernel returns it; -1 for dropped points
    assert point2voxel.tolist() == [keys.index(k) if min(k) >= 0 else -1 for k in map(tuple, coors.tolist())]
    torch.testing.assert_close(voxel_feats, ref_feats, **TOL)
    probe = torch.randn(ref_feats.shape, generator=gen, dtype=DTYPE)
    (voxel_feats * probe).sum().backward()
    (ref_feats * probe).sum().backward()
    torch.testing.assert_close(feats_op.grad, feats_ref.grad, **TOL)
    assert len(voxelize.dynamic_scatter_3d(feats, coors, reduce_type)) == 2  # without the map, mmcv's outputs


@pytest.mark.parametrize('training', [True, False])
def test_cylindrical_voxelisation_labels_and_map_match_loop(training):
    """Cylinder3D's preprocessor: each voxel's label is the majority of its points' (ties: the lowest), and
    ``point2voxel_map`` sends each point to its voxel's row (voxels sorted by coordinates)."""
    pytest.importorskip('mmdet3d', reason='mmdet3d is not installed')
    from collections import Counter

    from mmdet3d.models.data_preprocessors import Det3DDataPreprocessor
    from mmdet3d.structures import Det3DDataSample, PointData

    pre = Det3DDataPreprocessor(voxel=True, voxel_type='cylindrical', voxel_layer=dict(
        grid_shape=[6, 8, 4], point_cloud_range=[0, -3.14159265359, -4, 50, 3.14159265359, 2], max_num_points=-1,
        max_voxels=-1)).train(training)
    gen = torch.Generator().manual_seed(4)
    points, samples = [], []
    for n in (80, 50):
        points.append(torch.cat([torch.rand(n, 3, generator=gen) * 40 - 20, torch.rand(n, 1, generator=gen)], 1))
        sample = Det3DDataSample()
        sample.gt_pts_seg = PointData(pts_semantic_mask=torch.randint(0, 4, (n,), generator=gen))
        samples.append(sample)
    out = pre.voxelize(points, samples)
    assert out['voxels'].shape == (130, 6) and out['coors'].dtype == torch.int32

    for i, sample in enumerate(samples):
        coors = out['coors'][out['coors'][:, 0] == i, 1:]
        keys = sorted(set(map(tuple, coors.tolist())))
        assert sample.point2voxel_map.dtype == torch.int32
        assert sample.point2voxel_map.tolist() == [keys.index(k) for k in map(tuple, coors.tolist())]
        if training:
            labels = sample.gt_pts_seg.pts_semantic_mask.tolist()
            votes = [Counter(lab for k, lab in zip(map(tuple, coors.tolist()), labels) if k == key) for key in keys]
            expected = [min(v, key=lambda lab: (-v[lab], lab)) for v in votes]
            assert sample.gt_pts_seg.voxel_semantic_mask.tolist() == expected
