"""Sampled layer-local regulariser (sampled_levels.py, patch_rows.py): exact where nothing is sampled or
interpolated, unbiased where rows are sampled, and the cheap patch-row and index-pair shortcuts equal the slow
references."""
import warnings

import pytest
import torch
from torch import nn

from local_lsi_cases import CASES, GRID, assert_same_moments, build_case, call_model, sparse_net
from mmprune4u_plugin.core import local_lsi
from mmprune4u_plugin.core.layers import find_prunable_layers, module_by_name
from mmprune4u_plugin.core.local_lsi import local_lsi_moments
from mmprune4u_plugin.core.patch_rows import patch_rows
from mmprune4u_plugin.core.patches import patch_map
from mmprune4u_plugin.core.sampled_levels import SampledR, exact_level_indices, sampled_level_sums
from mmprune4u_plugin.core.sparse_patches import neighbour_table, pairs_table

EVERY_ROW = SampledR('sampled', rows=10 ** 12, levels=1000)  # keeps every non-zero row, every level exact


def _quiet_moments(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the 'fallback' case warns that it goes level by level
        return local_lsi_moments(*args, **kwargs)


@pytest.mark.parametrize('name', sorted(CASES))
def test_every_row_and_level_equals_the_exact_route(name):
    """Nothing sampled, nothing interpolated: the sampled route is the exact one (float32 products: ~1e-6)."""
    model, layers, batches = build_case(name, torch.float64)
    exact = _quiet_moments(model, layers, GRID, batches, call_model, sample=SampledR('exact'))
    sampled = _quiet_moments(model, layers, GRID, batches, call_model, sample=EVERY_ROW)
    assert_same_moments(sampled, exact, 2e-5)


def test_sparse_convs_every_row_equals_the_exact_route(spconv_nn):
    model, batches = sparse_net(spconv_nn, torch.float64)
    layers = find_prunable_layers(model)
    exact = _quiet_moments(model, layers, GRID, batches, call_model, sample=SampledR('exact'))
    sampled = _quiet_moments(model, layers, GRID, batches, call_model, sample=EVERY_ROW)
    assert_same_moments(sampled, exact, 2e-5)


def _dense_sums(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    y = rows @ weight.T + bias
    return torch.stack([y.sum(0), (y * y).sum(0)])


def _level_sums(rows, weight, levels, counts):
    bias = torch.linspace(-0.5, 0.5, weight.shape[0], dtype=torch.float64)
    rank = torch.empty(weight.numel(), dtype=torch.long)
    rank[torch.sort(weight.abs().reshape(-1), stable=True).indices] = torch.arange(weight.numel())
    return sampled_level_sums(rows, torch.ones(rows.shape[0], dtype=torch.float64), outputs=rows @ weight.T + bias,
                              weight=weight, bias=bias,
                              rank=rank.view_as(weight), counts=counts, levels=levels, numel=weight.numel(),
                              n=rows.shape[0], dense=_dense_sums(rows, weight, bias))


def test_interpolation_is_exact_for_uncorrelated_inputs():
    """Zero-mean orthogonal input columns: u^T S u is its diagonal at every level (ratio 1), so two exact levels
    give what every level exact gives; correlated inputs do not (the interpolation is not vacuous)."""
    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(200, 12, generator=gen, dtype=torch.float64)
    rows = torch.linalg.qr(raw - raw.mean(0)).Q * 3.0
    weight = torch.randn(5, 12, generator=gen, dtype=torch.float64)
    counts = [0, 6, 12, 24, 36, 48, 54, 59]
    for a, b in zip(_level_sums(rows, weight, 2, counts), _level_sums(rows, weight, 100, counts)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    mixed = rows @ torch.randn(12, 12, generator=gen, dtype=torch.float64) + 1.0
    assert not torch.allclose(_level_sums(mixed, weight, 2, counts)[1], _level_sums(mixed, weight, 100, counts)[1],
                              rtol=1e-3)


def test_exact_levels_include_both_ends_and_favour_high_sparsity():
    counts = [10 * k for k in range(100)]  # a 1000-weight layer, levels 0.00 .. 0.99
    picks = exact_level_indices(counts, 8, 1000)
    assert picks[0] == 1 and picks[-1] == 99 and 6 <= len(picks) <= 10
    assert sum(p > 50 for p in picks) > sum(p <= 50 for p in picks)
    assert exact_level_indices([0, 3, 7], 8, 10) == [1, 2]


def _linear_with_zero_rows(seed: int):
    torch.manual_seed(0)
    model = nn.Linear(6, 3).double().eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 50, 6, generator=gen, dtype=torch.float64) * torch.linspace(0.1, 3, 50)[:, None]
    x[:, ::2] = 0  # half the rows are zero: they carry nothing of the removed part
    return model, [x]


def test_rows_of_zeros_are_never_kept(monkeypatch):
    kept = []
    real = local_lsi.sampled_level_sums
    monkeypatch.setattr(local_lsi, 'sampled_level_sums', lambda rows, *a, **k: kept.append(rows) or real(rows, *a, **k))
    model, batches = _linear_with_zero_rows(0)
    local_lsi_moments(model, find_prunable_layers(model), GRID, batches, call_model, sample=EVERY_ROW)
    assert kept[0].shape == (50, 6) and bool((kept[0].abs().sum(1) > 0).all())


def test_sampled_sums_are_unbiased_and_tighten_with_more_rows():
    """The pruned output's sum is linear in the sampled rows (Horvitz-Thompson): over many seeds its mean is the
    exact sum within 4 standard errors, and 4x the rows halves its spread (within sampling slack)."""
    model, batches = _linear_with_zero_rows(1)
    layers = find_prunable_layers(model)
    level = GRID.index(0.5)
    exact = local_lsi_moments(model, layers, GRID, batches, call_model, sample=SampledR('exact'))[0][level].s_q
    spread = {}
    for rows in (8, 32):
        draws = torch.stack([local_lsi_moments(model, layers, GRID, batches, call_model,
                                               sample=SampledR('sampled', rows=rows, seed=s))[0][level].s_q
                             for s in range(200)])
        err = draws.std(0) / 200 ** 0.5
        assert bool(((draws.mean(0) - exact).abs() <= 4 * err + 1e-12).all())
        spread[rows] = draws.std(0)
    assert bool((spread[32] < 0.75 * spread[8]).all())


@pytest.mark.parametrize('mode', ['sampled', 'auto'])
def test_small_layers_are_exact_at_the_default_settings(mode):
    """Layers with at most ``rows`` output rows keep every row (weight 1) and, being small, get every level
    exactly, in float64: both routes equal the exact one to float64 rounding (a float32 model: to the rounding of
    its own float32 output, which the sampled route reads), without a setting that asks for it."""
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        model, layers, batches = build_case('conv2d', dtype)
        moments = local_lsi_moments(model, layers, GRID, batches, call_model, sample=SampledR(mode))
        exact = local_lsi_moments(model, layers, GRID, batches, call_model, sample=SampledR('exact'))
        assert_same_moments(moments, exact, tol)


def test_auto_takes_the_exact_route_only_where_it_costs_less():
    from mmprune4u_plugin.core.sampled_levels import exact_is_cheaper
    sample = SampledR('auto')
    # a linear 4 -> 2048 over 1e6 rows: exact 8 (1e6 * 16 / 2 + 20 * 2048 * 16) = 69M multiply-adds, sampling
    # every level of 1024 rows (1e6 rows pay for them) 100 * 1024 * 4 * 2048 = 839M
    assert exact_is_cheaper(sample, rows=10 ** 6, dim=4, channels=2048, num_levels=99)
    # a 3x3 conv, 256 -> 256 channels on 264 rows (ResNet layer4 of BEVFusion-Lite): exact 56G, sampling 6 levels
    # of all 264 rows 7 * 264 * 2304 * 256 = 1.1G
    assert not exact_is_cheaper(sample, rows=264, dim=2304, channels=256, num_levels=99)
    # a 1x1 conv 128 -> 64 on 1056 rows (an FPN lateral conv): exact 8 * 29.6M = 237M, sampling 7 * 1024 * 8192 = 59M
    assert not exact_is_cheaper(sample, rows=1056, dim=128, channels=64, num_levels=99)


@pytest.mark.parametrize('name', ['conv1d', 'conv1d-unbatched', 'conv2d', 'conv3d', 'conv-transpose1d',
                                  'conv-transpose2d', 'conv-transpose3d', 'conv-transpose-output-size', 'linear'])
def test_patch_rows_equal_the_chunks(name):
    """Norms without the patches, and the rows gathered at chosen indices, equal the patch chunks themselves."""
    model, layers, batches = build_case(name, torch.float64)
    for layer in layers:
        runner = module_by_name(model, layer.runner)
        calls = []
        handle = runner.register_forward_hook(lambda m, a, k, o: calls.append((a, k, o)), with_kwargs=True)  # -> None
        call_model(model, batches[0])
        handle.remove()
        args, kwargs, output = calls[0]
        chunks = torch.cat([p for p, _ in patch_map(runner, layer).chunks(args, kwargs, output)], 1)
        norms, gather = patch_rows(runner, args, kwargs, output)
        torch.testing.assert_close(norms.double(), chunks.square().sum((0, 2)), rtol=1e-5, atol=1e-6)
        pick = torch.tensor([0, chunks.shape[1] // 3, chunks.shape[1] - 1])
        torch.testing.assert_close(gather(pick), chunks[:, pick])


def test_sparse_index_pairs_give_the_probed_table(spconv_nn):
    model, batches = sparse_net(spconv_nn, torch.float32)
    seen = {}
    handles = [m.register_forward_hook(lambda m, a, o, n=n: seen.setdefault(n, (a[0], o)) and None)
               for n, m in model.named_children()]
    call_model(model, batches[0])
    for h in handles:
        h.remove()
    for name in ('subm_a', 'subm_b', 'down', 'up'):  # each has an indice_key: spconv keeps its pairs
        conv, (x, out) = getattr(model, name), seen[name]
        table = pairs_table(conv, x, out)
        assert table is not None, name
        assert torch.equal(table, neighbour_table(conv, x, out.features.shape[0])), name
    x, out = seen['subm_c']  # no indice_key: no pairs kept, the probe answers
    assert pairs_table(model.subm_c, x, out) is None
    assert torch.equal(neighbour_table(model.subm_c, x, out.features.shape[0], out),
                       neighbour_table(model.subm_c, x, out.features.shape[0]))
    x, out = seen['down']
    assert pairs_table(model.down, x, out.replace_feature(out.features + 1)) is None  # does not reproduce it


@pytest.mark.parametrize('spec, match', [('fast', "'exact', 'sampled' or 'auto'"),
                                         (dict(rows=1), 'rows >= 2'), (dict(levels=0), 'levels >= 1')])
def test_bad_settings_raise(spec, match):
    from mmprune4u_plugin.hooks.options import parse_local_r
    with pytest.raises(ValueError, match=match):
        parse_local_r(spec)
    with pytest.raises(ValueError, match="`local_r` must be"):
        parse_local_r(dict(speed=1))
