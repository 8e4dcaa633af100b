"""Layer-local regulariser: the Gram path (all levels from one pass) against the per-level reference (the runner
called again with the weight pruned to every level), and against hand computations."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from helpers import arange_
from mmprune4u_plugin.core import local_lsi
from mmprune4u_plugin.core.layers import find_prunable_layers
from mmprune4u_plugin.core.local_lsi import local_lsi_curves, local_lsi_moments
from mmprune4u_plugin.core.lsi import feature_lsi

GRID = (0.0, 0.1, 0.37, 0.5, 0.9, 0.99)


class AttnNet(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=batch_first)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.embed(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.head(a)


class WeightStandardisedConv2d(nn.Conv2d):
    """Output not affine in the stored weight: the Gram path must notice and fall back."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return self._conv_forward(x, w, self.bias)


class DeconvToSize(nn.Module):
    """A transposed conv told its output size (``output_size``: output padding chosen at run time)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1)
        self.conv = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.conv(self.up(x, output_size=(2 * x.shape[2], 2 * x.shape[3])))


CASES = {
    'conv1d': (lambda: nn.Sequential(nn.Conv1d(3, 4, 3, stride=2, padding=1, dilation=2), nn.ReLU(),
                                     nn.Conv1d(4, 5, 2, padding='same', padding_mode='circular')), (2, 3, 17)),
    'conv1d-unbatched': (lambda: nn.Conv1d(3, 4, 3, padding=2), (3, 11)),
    'conv2d': (lambda: nn.Sequential(
        nn.Conv2d(4, 6, 3, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
        nn.Conv2d(6, 6, 3, groups=6, bias=False, padding=1, padding_mode='reflect'),
        nn.Conv2d(6, 4, (2, 3), padding='same', padding_mode='replicate')), (2, 4, 9, 8)),
    'conv3d': (lambda: nn.Sequential(nn.Conv3d(2, 3, (3, 2, 3), stride=(1, 2, 1), padding=1, dilation=(2, 1, 1)),
                                     nn.ReLU(), nn.Conv3d(3, 4, 1)), (2, 2, 7, 6, 5)),
    'conv-transpose1d': (lambda: nn.Sequential(
        nn.ConvTranspose1d(3, 4, 3, stride=2, padding=1, output_padding=1, dilation=2),
        nn.ConvTranspose1d(4, 4, 2, groups=2, bias=False), nn.ConvTranspose1d(4, 2, 3, stride=3, padding=3)),
        (2, 3, 7)),
    'conv-transpose2d': (lambda: nn.Sequential(
        nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2),
        nn.ConvTranspose2d(6, 2, 2, stride=2)), (2, 4, 5, 4)),
    'conv-transpose3d': (lambda: nn.ConvTranspose3d(2, 3, 3, stride=2, padding=2, dilation=2), (1, 2, 4, 5, 3)),
    'conv-transpose-output-size': (DeconvToSize, (2, 3, 5, 4)),
    'linear': (lambda: nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3, bias=False)), (2, 3, 5)),
    'linear-few-rows': (lambda: nn.Linear(64, 5), (2, 3, 64)),  # 12 rows < 64 inputs: levels from the rows
    'linear-rows-then-gram': (lambda: nn.Linear(30, 4), (20, 30)),  # 20 rows, then 40 > 30: the Gram matrix
    'attention': (lambda: AttnNet(True), (2, 5, 4)),
    'attention-seq-first': (lambda: AttnNet(False), (5, 2, 4)),
    'fallback': (lambda: nn.Sequential(WeightStandardisedConv2d(3, 4, 3), nn.ReLU()), (2, 3, 6, 7)),
}


def _forward(model, batch):
    return model(batch)


def _case(name: str, dtype: torch.dtype):
    build, shape = CASES[name]
    torch.manual_seed(0)
    model = build().to(dtype).eval()
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(shape, generator=gen).to(dtype) * 2 + 0.5 for _ in range(2)]
    return model, find_prunable_layers(model), batches


def _assert_same_moments(fast, ref, tol: float) -> None:
    """Equal n and per-channel sums; sums are compared on the scale of the dense ones."""
    for row_f, row_r in zip(fast, ref):
        for a, b in zip(row_f, row_r):
            assert a.n == b.n
            if b.n == 0:
                continue
            ss_scale = float(b.ss_p.max())
            for field, scale in (('s_p', (b.n * ss_scale) ** 0.5), ('s_q', (b.n * ss_scale) ** 0.5),
                                 ('ss_p', ss_scale), ('ss_q', ss_scale)):
                torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=tol, atol=tol * scale)


@pytest.mark.parametrize('dtype, tol', [(torch.float64, 1e-10), (torch.float32, 2e-6)])
@pytest.mark.parametrize('name', sorted(CASES))
def test_gram_path_equals_per_level_reference(name, dtype, tol):
    model, layers, batches = _case(name, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        fast = local_lsi_moments(model, layers, GRID, batches, _forward)
        ref = local_lsi_moments(model, layers, GRID, batches, _forward, use_gram=False)
    _assert_same_moments(fast, ref, tol)
    kl_fast = np.array([[acc.kl_bound() for acc in row] for row in fast])
    kl_ref = np.array([[acc.kl_bound() for acc in row] for row in ref])
    np.testing.assert_allclose(kl_fast, kl_ref, rtol=1e3 * tol, atol=1e3 * tol * kl_ref.max())
    assert np.all(kl_ref[:, 0] == 0) and np.all(kl_ref[:, -1] > 0)


def test_gram_path_calls_no_runner_per_level(monkeypatch):
    """Conv and linear layers: no call per level at all; the reference path makes one per layer, level and batch."""
    calls = []
    real = local_lsi.functional_call
    monkeypatch.setattr(local_lsi, 'functional_call', lambda *a, **k: calls.append(1) or real(*a, **k))
    for name in ('conv2d', 'linear'):
        model, layers, batches = _case(name, torch.float32)
        local_lsi_moments(model, layers, GRID, batches, _forward)
        assert calls == []
        local_lsi_moments(model, layers, GRID, batches, _forward, use_gram=False)
        assert len(calls) == len(layers) * (len(GRID) - 1) * len(batches)
        calls.clear()


def test_non_affine_runner_warns_and_falls_back():
    model, layers, batches = _case('fallback', torch.float64)
    with pytest.warns(UserWarning, match=r"layer '0.weight': WeightStandardisedConv2d output is not P W\^T \+ b"):
        local_lsi_moments(model, layers, GRID, batches, _forward)


def test_linear_by_hand():
    """Weights 1..6 / 6 with alternating signs: at 1/3 the 2 smallest-magnitude weights go, at 1/2 the 3 smallest
    (channel 0 dies); R is the LSI bound between x W_pruned^T and x W^T over the rows of both batches."""
    layer = arange_(nn.Linear(3, 2, bias=False)).double()  # weights [[1/6, -2/6, 3/6], [-4/6, 5/6, -1]]
    x = torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0], [-2.0, 0.0, 1.0], [1.5, 1.0, 0.5]], dtype=torch.float64)
    local = local_lsi_curves(layer, find_prunable_layers(layer), (0.0, 1 / 3, 0.5), [x[:2], x[2:]], _forward)
    dense = x @ layer.weight.detach().T
    for k, first_row in ((1, [0.0, 0.0, 3 / 6]), (2, [0.0, 0.0, 0.0])):
        pruned = torch.tensor([first_row, [-4 / 6, 5 / 6, -1.0]], dtype=torch.float64)
        ref = float(feature_lsi(x @ pruned.T, dense, channel_dim=-1, fisher=False))
        assert local[0, k] == pytest.approx(ref, rel=1e-12)
    assert local[0, 0] == 0 and 0 < local[0, 1] < local[0, 2]


def test_progress_ticks_once_per_batch_and_once_per_layer():
    model, layers, batches = _case('conv2d', torch.float32)
    ticks = []
    local_lsi_curves(model, layers, GRID, batches, _forward, progress=ticks.append)
    assert sum(ticks) == len(batches) + len(layers)


def test_layer_that_never_runs_warns():
    model = nn.ModuleDict(dict(used=nn.Linear(3, 2), unused=nn.Linear(3, 2)))
    with pytest.warns(UserWarning, match="layer 'unused.weight': its module 'unused' never ran"):
        local = local_lsi_curves(model, find_prunable_layers(model), (0.0, 0.5), [torch.randn(4, 3)],
                                 lambda m, b: m['used'](b))
    assert local[1, 1] == 0 and local[0, 1] > 0


# ---------------------------------------------------------------- spconv (CPU: needs the scatter-add shim)

@pytest.fixture
def spconv_nn():
    spconv_nn = pytest.importorskip('spconv.pytorch', reason='spconv is not installed')
    from mmprune4u_plugin.compat import apply_cpu_shims
    apply_cpu_shims()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # belt and braces: spconv's own scatter-add is only right with one thread
    yield spconv_nn
    torch.set_num_threads(threads)


@pytest.mark.parametrize('dtype, tol', [(torch.float64, 1e-10), (torch.float32, 2e-6)])
def test_sparse_convs_gram_equals_per_level_reference(spconv_nn, dtype, tol):
    """Submanifold (shared and new index keys, non-cubic kernel), strided and inverse sparse convs."""
    gen = torch.Generator().manual_seed(0)
    batch, size = 2, 12
    indices = (torch.rand(batch, size, size, size, generator=gen) < 0.15).nonzero().int().contiguous()

    class SparseNet(nn.Module):
        def __init__(self):
            super().__init__()
            sp = spconv_nn
            self.subm_a = sp.SubMConv3d(4, 6, 3, indice_key='s1', bias=False)
            self.subm_b = sp.SubMConv3d(6, 6, 3, indice_key='s1', bias=False)
            self.down = sp.SparseConv3d(6, 5, 3, stride=2, padding=1, indice_key='d1', bias=False)
            self.up = sp.SparseInverseConv3d(5, 3, 3, indice_key='d1', bias=False)
            self.subm_c = sp.SubMConv3d(3, 3, (1, 3, 1), bias=False)
            self.subm_1 = sp.SubMConv3d(3, 2, 1, bias=False)  # spconv's 1x1 path (MinkUNet has these)

        def forward(self, feats):
            x = spconv_nn.SparseConvTensor(feats, indices, [size] * 3, batch)
            return self.subm_1(self.subm_c(self.up(self.down(self.subm_b(self.subm_a(x))))))

    model = SparseNet().to(dtype).eval()
    batches = [torch.randn(len(indices), 4, generator=gen).to(dtype) for _ in range(2)]
    layers = find_prunable_layers(model)
    assert [lay.kind for lay in layers] == ['SubMConv3d', 'SubMConv3d', 'SparseConv3d', 'SparseInverseConv3d',
                                            'SubMConv3d', 'SubMConv3d']
    fast = local_lsi_moments(model, layers, GRID, batches, _forward)
    ref = local_lsi_moments(model, layers, GRID, batches, _forward, use_gram=False)
    _assert_same_moments(fast, ref, tol)


def test_stride_one_single_group_convs_take_the_lagged_gram(monkeypatch):
    """Of the 'conv2d' case, only the stride-1 single-group conv (the third) sums its Gram matrix by lags."""
    from mmprune4u_plugin.core import patches
    calls = []
    real = patches.conv_gram
    monkeypatch.setattr(patches, 'conv_gram', lambda *args: calls.append(args[0].shape) or real(*args))
    model, layers, batches = _case('conv2d', torch.float64)
    local_lsi_moments(model, layers, GRID, batches, _forward)
    assert calls == [torch.Size([2, 6, 6, 10])] * len(batches)  # 5 x 8 input, 'same' (2, 3) kernel: pads (0 1, 1 1)


def test_mmcv_attention_wrapper_calls_with_keywords():
    """mmcv's MultiheadAttention (used by TransFusion-style heads) calls nn.MultiheadAttention with keywords only."""
    transformer = pytest.importorskip('mmcv.cnn.bricks.transformer', reason='mmcv is not installed')
    torch.manual_seed(0)
    model = transformer.MultiheadAttention(embed_dims=8, num_heads=2, batch_first=True).double().eval()
    layers = find_prunable_layers(model)
    assert [(lay.name, lay.runner) for lay in layers] == [
        ('attn.in_proj_weight', 'attn'), ('attn.out_proj.weight', 'attn')]
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(2, 5, 8, generator=gen, dtype=torch.float64),
                torch.randn(2, 7, 8, generator=gen, dtype=torch.float64)) for _ in range(2)]
    forward = lambda m, b: m(query=b[0], key=b[1], value=b[1])  # noqa: E731
    fast = local_lsi_moments(model, layers, GRID, batches, forward)
    ref = local_lsi_moments(model, layers, GRID, batches, forward, use_gram=False)
    _assert_same_moments(fast, ref, 1e-10)
    assert all(acc.n == 2 * 2 * 5 for acc in fast[1][1:])
