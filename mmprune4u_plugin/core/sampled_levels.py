"""Per-channel output sums of an affine layer pruned to every level, from a sample of its patch rows.

The exact route (gram_levels.py) needs the J x J patch Gram matrix and about 20 C J^2 multiply-adds per layer,
whatever the calibration size: 10-20 forwards of a ResNet stage, where J = 9 C. Here at most ``SampledR.rows`` rows
per layer are kept over the calibration batches, each with a probability proportional to its squared norm (rows of
zeros, e.g. the empty cells of a LiDAR BEV map, add nothing to what pruning removes and are never kept), and
weighted by the inverse probability (Horvitz-Thompson). With y = w . P and d = u . P the output the pruned weights u
remove (notation of gram_levels.py):

- the sums of d and of y d are exact on the sample at every level (one binned cumulative sum over the bands of the
  nested magnitude masks);
- the centred quadratic terms (of d, and of the kept part y - d) are computed at ``levels`` levels or more (as many
  as ``share`` of the layer's forward pays for), one N' x J x (levels C) product; in between, each is its diagonal
  part (exact at every level) times the ratio quadratic / diagonal, interpolated linearly in the number of pruned
  weights.

The dense sums stay exact (all rows). Cost per layer: (1 + exact levels) N' J C multiply-adds (the kept rows' dense
output is the layer's own). What it gives up against the exact route: the sampling noise of the removed part's moments (relative ~ 1 / sqrt(N')), and the
interpolation between exact levels, which misses a channel's jumps there (a large weight of the opposite sign
pruned). tests/core/test_sampled_levels.py checks the exact limits; tools/benchmark_local_lsi.py measures the error
of R against the exact route on real models.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Sequence

import torch

from .gram_levels import binned_cumsum, level_bands

SMALL_LAYER = 1 << 26  # multiply-adds below which every level of a layer is exact


@dataclass(frozen=True)
class SampledR:
    """How the layer-local regulariser is measured.

    ``mode``: ``'exact'`` (every layer from its patch Gram matrix, gram_levels.py), ``'sampled'`` (every affine layer
    from sampled rows, this module) or ``'auto'`` (per layer, whichever :func:`exact_is_cheaper` says). ``rows``:
    rows kept per layer over the calibration batches; ``levels``: at least this many levels computed exactly, more
    while they cost at most ``share`` of the layer's forward; ``seed``: of the row choice (fixed, so that a
    measurement is reproducible; any seed gives the same R up to the sampling noise)."""

    mode: str = 'auto'
    rows: int = 1024
    levels: int = 6
    share: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ('exact', 'sampled', 'auto'):
            raise ValueError(f"`local_r` mode must be 'exact', 'sampled' or 'auto', but got mode: {self.mode!r}")
        if self.rows < 2 or self.levels < 1 or self.share < 0:
            raise ValueError(f'the sampled local regulariser needs rows >= 2, levels >= 1 and share >= 0, but got '
                             f'rows: {self.rows}, levels: {self.levels}, share: {self.share}')


# per multiply-add, the Gram route runs several times slower than sampling (its level sums are many small block
# products): measured 4-6x on BEVFusion-Lite's heads and necks (tools/benchmark_local_lsi.py)
EXACT_OVERHEAD = 8.0


def exact_is_cheaper(sample: SampledR, *, rows: int, dim: int, channels: int, num_levels: int) -> bool:
    """Whether the exact Gram route (about rows J^2 / 2 for the Gram matrix and 20 C J^2 for the level sums,
    gram_levels.py, times ``EXACT_OVERHEAD``) costs no more than sampling (about (1 + exact levels) kept J C), for a
    layer with ``rows`` output rows over the calibration data, patch length J = ``dim`` and C = ``channels`` per
    group. (A small layer needs no exception: sampling keeps all its rows and computes all its levels, exactly.)"""
    kept = min(rows, sample.rows)
    levels = exact_level_count(sample, rows=rows, kept=kept, weights=dim * channels, num_levels=num_levels)
    exact = EXACT_OVERHEAD * (rows * dim * dim / 2 + 20 * channels * dim * dim)
    return exact <= (1 + levels) * kept * dim * channels


def exact_level_indices(counts: Sequence[int], levels: int, numel: int) -> list[int]:
    """Indices of the levels (count > 0) computed exactly: ``levels`` of them, always the first and the last pruned
    level, spread evenly in a coordinate that is half the sparsity s and half log(1 - s) (the kept weights' quadratic
    form changes fastest where few are left, so high sparsities get more exact levels)."""
    pruned = [k for k, c in enumerate(counts) if c > 0]
    if len(pruned) <= levels:
        return pruned
    s = torch.tensor([counts[k] / numel for k in pruned], dtype=torch.float64).clamp(max=1 - 1 / (2 * numel))
    coord = 0.5 * s / s[-1] + 0.5 * torch.log1p(-s) / math.log1p(-float(s[-1]))
    targets = torch.linspace(float(coord[0]), 1.0, levels, dtype=torch.float64)
    picks = {pruned[int((coord - t).abs().argmin())] for t in targets}
    return sorted(picks | {pruned[0], pruned[-1]})


def exact_level_count(sample: SampledR, *, rows: int, kept: int, weights: int, num_levels: int) -> int:
    """Levels computed exactly for a layer: every level when that costs at most ``SMALL_LAYER`` multiply-adds (each
    level costs ``kept`` x ``weights``), else as many as ``sample.share`` of the layer's forward over its ``rows``
    pays for, at least ``sample.levels``."""
    if num_levels * kept * weights <= SMALL_LAYER:
        return num_levels
    return min(num_levels, max(sample.levels, int(sample.share * rows / max(1, kept))))


def _level_sums(values: torch.Tensor, band: torch.Tensor, levels: int) -> torch.Tensor:
    """(levels, C): per channel, the sum of ``values`` whose band (first level that removes them) is <= k."""
    return binned_cumsum(values, band, levels).T


def _interpolate(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of the rows ``fp`` (len(xp), C) at ``x`` (constant beyond the ends)."""
    if xp.numel() == 1:
        return fp.expand(x.numel(), -1).clone()
    right = torch.searchsorted(xp, x).clamp(1, xp.numel() - 1)
    x0, x1 = xp[right - 1], xp[right]
    t = ((x - x0) / (x1 - x0)).clamp(0, 1)[:, None]
    return fp[right - 1] * (1 - t) + fp[right] * t


def sampled_level_sums(rows: torch.Tensor, row_weight: torch.Tensor, *, outputs: torch.Tensor, weight: torch.Tensor,
                       bias: torch.Tensor, rank: torch.Tensor, counts: Sequence[int], levels: int, numel: int,
                       n: int, dense: torch.Tensor, precise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(s_q, ss_q), each (len(counts), C) float64: sum and sum of squares of the pruned output over all ``n`` rows.

    ``rows`` were kept with probabilities pi (``row_weight`` = 1 / pi; rows of zeros, never kept, add nothing to
    any term below), so every sum over all rows is estimated by the weighted sum over the kept ones
    (Horvitz-Thompson). The pruned output's centred sum of squares is taken in the better-conditioned of two exact
    identities, the one whose estimated quadratic term is smaller (its sampling and interpolation errors scale with
    it): the dense one minus the removed part's terms (at low sparsity: the errors scale with the small removed
    part), else the kept weights' own quadratic form (near a channel's death, where the first would subtract
    near-equal numbers).

    Args:
        rows: P, (N', J) kept patch rows of one group.
        row_weight: (N',) inverse inclusion probabilities.
        outputs: (N', C) the layer's dense output at those rows, w . P + b (the layer computed it already: one
            product fewer here).
        weight: w, (C, J) in patch order.
        bias: b, (C,).
        rank: (C, J) rank of each weight in the layer's magnitude order.
        counts: Number of weights the layer loses at each level (non-decreasing).
        numel: Weights of the whole layer (all groups).
        levels: How many levels get the exact quadratic terms.
        n: Rows of the whole calibration output.
        dense: (2, C) exact sum and sum of squares of the dense output over the ``n`` rows.
        precise: Products in float64 (for a layer whose every row is kept and every level exact: then this is the
            exact route, to float64 rounding).
    """
    # Products and the centred sums of squares over the kept rows in float32 unless ``precise`` (their rounding,
    # ~1e-6 relative, is far below the sampling noise), everything else in float64. Rows are scaled by sqrt(1 / pi), so that
    # sum_n (.)^2 / pi_n is a plain sum of squares.
    w, num_levels = weight.to(torch.float64), len(counts)
    work = torch.float64 if precise else torch.float32
    root_w = row_weight.to(work).sqrt()
    scaled = rows.to(work) * root_w[:, None]
    counts_t = torch.as_tensor(counts, dtype=torch.long)
    band = level_bands(rank, counts)  # == num_levels: never removed
    s_p, ss_p = dense.to(torch.float64)
    y_sum = s_p - n * bias.to(torch.float64)  # sum of w . P over all rows (exact)
    p_sum = (root_w @ scaled).double()  # sum_n P_n / pi_n
    y = (outputs.to(work) - bias.to(work)) * root_w[:, None]  # sqrt(1 / pi) w . P
    lin = _level_sums(w * p_sum, band, num_levels)  # sum d
    cov = _level_sums(w * (y.T @ scaled).double(), band, num_levels) - y_sum * lin / n  # sum (y - ȳ)(d - d̄)
    # the inputs' centred scatter, diagonal
    var_in = (scaled.square().sum(0, dtype=torch.float64) - p_sum * p_sum / n).clamp_min(0)
    diag_removed = _level_sums(w * w * var_in, band, num_levels)
    diag_kept = (w * w * var_in).sum(1) - diag_removed
    var_y = ss_p - s_p * s_p / n
    exact = exact_level_indices(counts, levels, numel)
    removed, kept = torch.zeros(2, num_levels, w.shape[0], dtype=torch.float64)
    if exact and rows.shape[0]:
        picks = torch.as_tensor(exact)
        removed_w = torch.where(band[None] <= picks[:, None, None], weight.to(work)[None], 0.0)
        # centred products without the cancellation of float32: the rows centred once (P_n - p̄, scaled), so the
        # product is sqrt(1 / pi_n) (d_n - d̄) at every exact level, and the kept part's output centred likewise;
        # sum (.)^2 / pi over the kept rows, plus (n - sum 1 / pi) times the mean^2 (the rows of zeros, never kept:
        # algebraically the plain sum d^2 / pi - (sum d)^2 / n, as the full-row tests check)
        centred = scaled - root_w[:, None] * (p_sum / n).to(work)
        d = (centred @ removed_w.reshape(-1, weight.shape[1]).T).view(rows.shape[0], len(exact), -1)
        d_mean, y_mean = lin[exact] / n, (y_sum - lin[exact]) / n
        unseen = n - row_weight.double().sum()
        y_c = y - root_w[:, None] * (y_sum / n).to(work)  # sqrt(1 / pi) (y - ȳ)
        q_kept = (y_c[:, None] - d).square_().sum(0).double() + unseen * y_mean * y_mean
        q_removed = d.square_().sum(0).double() + unseen * d_mean * d_mean
        pruned = counts_t > 0
        x, xp = counts_t[pruned].to(torch.float64), counts_t[picks].to(torch.float64)
        removed[pruned] = _interpolate(x, xp, _ratio(q_removed, diag_removed[exact])) * diag_removed[pruned]
        kept[pruned] = _interpolate(x, xp, _ratio(q_kept, diag_kept[exact])) * diag_kept[pruned]
        removed[exact], kept[exact] = q_removed, q_kept
    s_q = s_p - lin
    var_sum = torch.where(removed <= kept, var_y - 2 * cov + removed, kept)
    return s_q, var_sum.clamp_min(0) + s_q * s_q / n


def _ratio(quad: torch.Tensor, diag: torch.Tensor) -> torch.Tensor:
    """quad / diag, 1 where the diagonal is 0 (no removed or kept input varies: the quadratic form is 0 too)."""
    safe = diag > 0
    return torch.where(safe, quad / torch.where(safe, diag, 1.0), 1.0)
