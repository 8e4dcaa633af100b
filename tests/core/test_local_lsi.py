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
from local_lsi_cases import CASES, GRID, assert_same_moments, build_case, call_model, sparse_net


@pytest.mark.parametrize('dtype, tol', [(torch.float64, 1e-10), (torch.float32, 2e-6)])
@pytest.mark.parametrize('name', sorted(CASES))
def test_gram_path_equals_per_level_reference(name, dtype, tol):
    model, layers, batches = build_case(name, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        fast = local_lsi_moments(model, layers, GRID, batches, call_model)
        ref = local_lsi_moments(model, layers, GRID, batches, call_model, use_gram=False)
    assert_same_moments(fast, ref, tol)
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
        model, layers, batches = build_case(name, torch.float32)
        local_lsi_moments(model, layers, GRID, batches, call_model)
        assert calls == []
        local_lsi_moments(model, layers, GRID, batches, call_model, use_gram=False)
        assert len(calls) == len(layers) * (len(GRID) - 1) * len(batches)
        calls.clear()


def test_non_affine_runner_warns_and_falls_back():
    model, layers, batches = build_case('fallback', torch.float64)
    with pytest.warns(UserWarning, match=r"layer '0.weight': WeightStandardisedConv2d output is not P W\^T \+ b"):
        local_lsi_moments(model, layers, GRID, batches, call_model)


def test_linear_by_hand():
    """Weights 1..6 / 6 with alternating signs: at 1/3 the 2 smallest-magnitude weights go, at 1/2 the 3 smallest
    (channel 0 dies); R is the LSI bound between x W_pruned^T and x W^T over the rows of both batches."""
    layer = arange_(nn.Linear(3, 2, bias=False)).double()  # weights [[1/6, -2/6, 3/6], [-4/6, 5/6, -1]]
    x = torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0], [-2.0, 0.0, 1.0], [1.5, 1.0, 0.5]], dtype=torch.float64)
    local = local_lsi_curves(layer, find_prunable_layers(layer), (0.0, 1 / 3, 0.5), [x[:2], x[2:]], call_model)
    dense = x @ layer.weight.detach().T
    for k, first_row in ((1, [0.0, 0.0, 3 / 6]), (2, [0.0, 0.0, 0.0])):
        pruned = torch.tensor([first_row, [-4 / 6, 5 / 6, -1.0]], dtype=torch.float64)
        ref = float(feature_lsi(x @ pruned.T, dense, channel_dim=-1, fisher=False))
        assert local[0, k] == pytest.approx(ref, rel=1e-12)
    assert local[0, 0] == 0 and 0 < local[0, 1] < local[0, 2]


def test_progress_ticks_once_per_batch_and_once_per_layer():
    model, layers, batches = build_case('conv2d', torch.float32)
    ticks = []
    local_lsi_curves(model, layers, GRID, batches, call_model, progress=ticks.append)
    assert sum(ticks) == len(batches) + len(layers)


def test_layer_that_never_runs_warns():
    model = nn.ModuleDict(dict(used=nn.Linear(3, 2), unused=nn.Linear(3, 2)))
    with pytest.warns(UserWarning, match="layer 'unused.weight': its module 'unused' never ran"):
        local = local_lsi_curves(model, find_prunable_layers(model), (0.0, 0.5), [torch.randn(4, 3)],
                                 lambda m, b: m['used'](b))
    assert local[1, 1] == 0 and local[0, 1] > 0


# ---------------------------------------------------------------- spconv (CPU: needs the scatter-add shim)

@pytest.mark.parametrize('dtype, tol', [(torch.float64, 1e-10), (torch.float32, 2e-6)])
def test_sparse_convs_gram_equals_per_level_reference(spconv_nn, dtype, tol):
    """Submanifold (shared and new index keys, non-cubic kernel), strided and inverse sparse convs."""
    model, batches = sparse_net(spconv_nn, dtype)
    layers = find_prunable_layers(model)
    assert [lay.kind for lay in layers] == ['SubMConv3d', 'SubMConv3d', 'SparseConv3d', 'SparseInverseConv3d',
                                            'SubMConv3d', 'SubMConv3d']
    fast = local_lsi_moments(model, layers, GRID, batches, call_model)
    ref = local_lsi_moments(model, layers, GRID, batches, call_model, use_gram=False)
    assert_same_moments(fast, ref, tol)


def test_stride_one_single_group_convs_take_the_lagged_gram(monkeypatch):
    """Of the 'conv2d' case, only the stride-1 single-group conv (the third) sums its Gram matrix by lags."""
    from mmprune4u_plugin.core import patches
    calls = []
    real = patches.conv_gram
    monkeypatch.setattr(patches, 'conv_gram', lambda *args: calls.append(args[0].shape) or real(*args))
    model, layers, batches = build_case('conv2d', torch.float64)
    local_lsi_moments(model, layers, GRID, batches, call_model)
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
    assert_same_moments(fast, ref, 1e-10)
    assert all(acc.n == 2 * 2 * 5 for acc in fast[1][1:])


@pytest.mark.parametrize('shape,channel', [((2, 5, 130, 77), 1), ((20000, 7), 1), ((512, 3), 1),
                                           ((3, 4000, 4), 2), ((6, 11), 0), ((2, 3, 4, 5, 6), 1)])
def test_channel_sums_match_a_float64_reference(shape, channel):
    """Blocked float32 sums equal the float64 sums to ~1e-7 of the channel's sum of squares, also for values far
    from 0 (mean up to 100 x std: a float32 running sum loses ~1e-5 over 20000 rows)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen) + 100 * torch.rand(shape[channel], generator=gen).view(
        [-1 if i == channel else 1 for i in range(len(shape))])
    dims = [i for i in range(len(shape)) if i != channel]
    ref = torch.stack([x.double().sum(dims), x.double().square().sum(dims)])
    got = local_lsi.channel_sums(x, channel)
    assert got.dtype == torch.float64 and got.shape == ref.shape
    n = x.numel() // shape[channel]
    assert torch.all((got[0] - ref[0]).abs() <= 1e-6 * (n * ref[1]).sqrt())
    assert torch.all((got[1] - ref[1]).abs() <= 1e-6 * ref[1])
    half = local_lsi.channel_sums(x.half(), channel)  # half inputs are summed in float32, not in half
    ref_half = torch.stack([x.half().double().sum(dims), x.half().double().square().sum(dims)])
    assert torch.all((half[1] - ref_half[1]).abs() <= 1e-6 * ref_half[1])
    assert torch.equal(local_lsi.channel_sums(x.double(), channel), ref)


@pytest.mark.parametrize('name', ['conv2d', 'linear', 'fallback'])
def test_batched_curve_equals_the_per_level_bounds(name):
    """local_lsi_curves evaluates a layer's levels in one call (lsi.pooled_kl_bounds): the same R as each level's
    MomentAccumulator.kl_bound, on the Gram route and on the per-level route (where each level pooled its own
    dense sums)."""
    model, layers, batches = build_case(name, torch.float64)
    moments = local_lsi_moments(model, layers, GRID, batches, call_model)
    expected = np.array([[acc.kl_bound() for acc in row] for row in moments])
    assert expected[:, 1:].max() > 0
    np.testing.assert_allclose(np.array([local_lsi.layer_curve(row) for row in moments]), expected, rtol=1e-12,
                               atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        np.testing.assert_allclose(local_lsi_curves(model, layers, GRID, batches, call_model), expected, rtol=1e-12,
                                   atol=0)


class _DetectorLike(nn.Module):
    """backbone -> head (the task tap's module) -> post-processing that counts its calls; ``late`` runs after."""

    def __init__(self, late: bool = False) -> None:
        super().__init__()
        self.backbone = nn.Linear(4, 6)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(6, 3))
        self.late = nn.Linear(3, 2) if late else None
        self.post_calls = 0

    def forward(self, x):
        out = self.head(self.backbone(x))
        self.post_calls += 1  # NMS stands here: R needs none of it
        return self.late(out) if self.late is not None else out


@pytest.mark.parametrize('late', [False, True])
def test_stop_at_task_taps_skips_post_processing_and_keeps_r(late):
    from mmprune4u_plugin.core.taps import Tap
    model = _DetectorLike(late).double()
    layers = find_prunable_layers(model)
    batches = [torch.randn(5, 4, dtype=torch.float64) for _ in range(3)]
    full = local_lsi_curves(model, layers, GRID, batches, call_model)
    assert model.post_calls == 3
    model.post_calls = 0
    stopped = local_lsi_curves(model, layers, GRID, batches, call_model,
                               stop_at=[Tap('head', 'input'), Tap('head', 'output')])
    # stopped after the head in every pass; a layer after the tap keeps the pass going to its end
    assert model.post_calls == (3 if late else 0)
    np.testing.assert_array_equal(stopped, full)
    assert np.all(stopped[:, -1] > 0)


def test_level_moments_read_as_accumulators_and_batch_their_bounds():
    """Two levels of a 2-channel output over n = 4 rows, by hand: dense mean 0, var 1 (sums 0, 4); level 1 keeps
    channel 0 and moves channel 1's mean to 1 with var 1 (sums 4, 8); level 0 is unused (sparsity 0)."""
    from mmprune4u_plugin.core.lsi import MomentAccumulator
    s_p, ss_p = torch.zeros(2, dtype=torch.float64), torch.full((2,), 4.0, dtype=torch.float64)
    s_q = torch.tensor([[0.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    ss_q = torch.tensor([[0.0, 0.0], [4.0, 8.0]], dtype=torch.float64)
    row = local_lsi.LevelMoments(4, s_p, ss_p, s_q, ss_q, used=[False, True])
    assert len(row) == 2 and row[0].n == 0 and row[1].n == 4 and torch.equal(row[1].s_q, s_q[1])
    # channel 1: dmu^2 / (2 (1 + eps)) with eps = 0.01 * max(1, 1) and equal variances -> 1 / 2.02; channel 0: 0
    assert row.kl_bounds() == pytest.approx([0.0, 0.5 * (1 / 2.02)], rel=1e-12)
    assert local_lsi.layer_curve(row) == row.kl_bounds()
    one_by_one = [MomentAccumulator(n=4, s_p=s_p, ss_p=ss_p, s_q=s_q[1], ss_q=ss_q[1]).kl_bound()]
    assert row.kl_bounds()[1:] == pytest.approx(one_by_one, rel=1e-15)
    assert [acc.n for acc in row[0:2]] == [0, 4]
    with pytest.raises(ValueError, match='do not match 3 levels'):
        local_lsi.LevelMoments(4, s_p, ss_p, s_q, ss_q, used=[False, True, True])
