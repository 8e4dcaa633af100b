"""Per-channel output sums of an affine layer pruned to every level, from its patch Gram matrix.

A layer with y[n, c] = w_c . P_n + b_c (patches.py), pruned by removing the weights u_c (w_c masked to the removed
entries), outputs y[n, c] - u_c . P_n. Over the calibration rows n, with M = sum_n P_n P_n^T and m = sum_n P_n:

    sum_n  (y - u.P)   = sum_n y   - m . u
    sum_n  (y - u.P)^2 = sum_n y^2 - 2 u . (M w + b m) + u^T M u

(the middle term is sum_n y (u.P) with y = w.P + b). Magnitude masks are nested: level k removes the weights whose
rank in the layer's global magnitude order (magnitude_order) is below count_k, so each weight has a *band*, the first
level that removes it, and every level follows from M, m, the weights and the bands, with no network pass.

Cost. u^T M u for all C channels at all K levels directly is K C J^2. Here levels go in blocks (K / 20 levels):
with U0 removed before the block, T0 = U0 M (one C x J x J product per block) and D_k = u_k - U0 (the weights of the
block's bands up to k),

    u_k^T M u_k = U0^T M U0 + 2 D_k . T0 + D_k^T M D_k,

where the last term only involves each channel's few in-block weights: a gather of M on them and a small batched
product. About 20 C J^2 products plus the gathers in all, for any K. All in float64: a channel that a level nearly
kills has var = sum_q^2 / n - mean_q^2 near 0, and its (large, steep) LSI term magnifies rounding there.

While the calibration rows are fewer than J, :class:`PatchMoments` keeps the rows themselves (smaller than M), and
if a product with them per level (K N C J) is cheaper than M and the blocked sweep, each level is one such product.
"""
from __future__ import annotations

from typing import Sequence

import torch

GATHER_ELEMENTS = 1 << 23  # in-block Gram entries gathered at once
BLOCK_LEVELS = 0.05  # levels per block / levels: an entry gathered costs ~400 FMAs of the T0 product (CPU, measured)
GRAM_BLOCK = 256  # the Gram matrix is built from its upper block rows (about half the products)


class PatchMoments:
    """Per group: m = sum of the patch rows, and the rows themselves while there are at most J of them, else
    M = sum of P_n P_n^T (float64)."""

    def __init__(self) -> None:
        self.rows: list[torch.Tensor] = []
        self.count = 0
        self.upper: torch.Tensor | None = None  # upper block rows of M (the blocks below the diagonal stay 0)
        self.total: torch.Tensor | None = None

    def add(self, patches: torch.Tensor) -> None:
        """Add a chunk of patches, (groups, rows, J)."""
        p = patches.detach()
        p = p.float() if p.dtype in (torch.float16, torch.bfloat16) else p
        total = torch.bmm(p.new_ones(p.shape[0], 1, p.shape[1]), p)[:, 0].double()  # BLAS: fast, exact enough
        self.total = total if self.total is None else self.total + total
        self.count += p.shape[1]
        if self.upper is None and self.count <= p.shape[2]:
            self.rows.append(p.clone())
            return
        for rows in self.rows + [p]:
            self.upper = _upper_gram(rows) if self.upper is None else self.upper + _upper_gram(rows)
        self.rows = []

    def add_gram(self, gram: torch.Tensor, total: torch.Tensor, count: int) -> None:
        """Add the Gram matrices (groups, J, J), patch sums (groups, J) and number of rows of patches summed
        elsewhere (conv_gram.py, sparse_patches.py)."""
        self.total = total if self.total is None else self.total + total
        self.count += count
        for rows in self.rows:
            gram = gram + _upper_gram(rows)  # only the upper triangle is read (gram())
        self.rows = []
        self.upper = gram if self.upper is None else self.upper + gram

    def gram(self, group: int) -> torch.Tensor:
        upper = self.upper[group]
        return torch.triu(upper) + torch.triu(upper, 1).T


def _upper_gram(p: torch.Tensor) -> torch.Tensor:
    dim = p.shape[2]
    if dim <= 2 * GRAM_BLOCK:
        return torch.bmm(p.transpose(1, 2), p).double()
    out = torch.zeros(p.shape[0], dim, dim, dtype=torch.float64)
    for s in range(0, dim, GRAM_BLOCK):
        out[:, s:s + GRAM_BLOCK, s:] = torch.bmm(p[:, :, s:s + GRAM_BLOCK].transpose(1, 2), p[:, :, s:])
    return out


def layer_level_sums(stats: PatchMoments, *, weight: torch.Tensor, bias: torch.Tensor, rank: torch.Tensor,
                     counts: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lin, cross, quad), each (levels, C), of a layer with patch-order ``weight`` / ``rank`` (groups, C/G, J).

    Kept rows are used as they are when that is cheaper (one product per level, K N C J multiply-adds) than their
    Gram matrix and the blocked sweep (N J^2 + about 20 C J^2)."""
    groups, per_group, dim = weight.shape
    levels = sum(1 for c in counts if c > 0)
    if stats.upper is None and levels * stats.count * per_group > dim * (stats.count + per_group / BLOCK_LEVELS):
        zeros = torch.zeros(groups, dim, dim, dtype=torch.float64)
        stats.add_gram(zeros, zeros[:, 0], 0)  # folds the rows into the Gram matrix
    terms = []
    for g in range(groups):
        b = bias[g * per_group:(g + 1) * per_group]
        if stats.upper is None:
            terms.append(_rows_level_sums(torch.cat([r[g] for r in stats.rows]).double(), weight[g], b, rank[g],
                                          counts))
        else:
            terms.append(level_sums(gram=stats.gram(g), patch_sum=stats.total[g], weight=weight[g], bias=b,
                                    rank=rank[g], counts=counts))
    return tuple(torch.cat([t[i] for t in terms], 1) for i in range(3))


def _rows_level_sums(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, rank: torch.Tensor,
                     counts: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The terms of :func:`level_sums` from the rows P (N, J) themselves: d = P u per level."""
    w = weight.to(torch.float64)
    y = rows @ w.T + bias.to(torch.float64)
    out = [torch.zeros(len(counts), w.shape[0], dtype=torch.float64) for _ in range(3)]
    for k, count in enumerate(counts):
        if count > 0:
            d = rows @ (w * (rank < count)).T
            out[0][k], out[1][k], out[2][k] = d.sum(0), (y * d).sum(0), (d * d).sum(0)
    return out[0], out[1], out[2]


def level_sums(*, gram: torch.Tensor, patch_sum: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               rank: torch.Tensor, counts: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three level-dependent terms above, for one group of output channels.

    Args:
        gram: M, (J, J) float64, symmetric.
        patch_sum: m, (J,).
        weight: w, (C, J).
        bias: b, (C,).
        rank: (C, J) rank of each weight in the global magnitude order of its layer.
        counts: Number of weights the layer loses at each level (non-decreasing).

    Returns:
        (lin, cross, quad), each (levels, C) float64: m . u, u . (M w + b m) and u^T M u, where u is w masked to
        rank < count.
    """
    w, m = weight.to(torch.float64), patch_sum.to(torch.float64)
    pull = w @ gram + bias.to(torch.float64)[:, None] * m  # rows: M w_c + b_c m (M is symmetric)
    levels = len(counts)
    band = level_bands(rank, counts)
    out = [torch.zeros(levels, w.shape[0], dtype=torch.float64) for _ in range(3)]
    step = max(1, round(levels * BLOCK_LEVELS))
    for k0 in range(0, levels, step):
        k1 = min(levels, k0 + step)
        before = w * (band < k0)
        t0 = before @ gram
        base = ((before @ m), (before * pull).sum(1), (t0 * before).sum(1))
        bins = torch.where((band >= k0) & (band < k1), band - k0, k1 - k0)  # k1 - k0: not in this block
        lin = [binned_cumsum(w * v, bins, k1 - k0) for v in (m.expand_as(w), pull, 2 * t0)]
        inner = _in_block_quad(gram, w, bins, k1 - k0)
        for i, (b0, extra) in enumerate(zip(base, (lin[0], lin[1], lin[2] + inner))):
            out[i][k0:k1] = (b0[:, None] + extra).T
    return out[0], out[1], out[2]


def level_bands(rank: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Per weight, the first level that removes it (the first k with rank < counts[k]; ``len(counts)``: none), as
    ``rank``'s shape. A lookup table over the ranks (one gather; ranks are 0..numel-1), ~10x faster than
    ``searchsorted`` on a large layer."""
    if not len(counts):
        return torch.zeros_like(rank)
    numel = max(int(rank.max()) + 1 if rank.numel() else 0, int(counts[-1]))
    steps = torch.as_tensor([0, *counts], dtype=torch.long).clamp(max=numel)
    table = torch.repeat_interleave(torch.arange(len(counts) + 1), torch.diff(steps, append=torch.tensor([numel])))
    return table[rank]


def binned_cumsum(values: torch.Tensor, bins: torch.Tensor, width: int) -> torch.Tensor:
    """(C, width): per channel, the sum of ``values`` whose bin is <= q, for q < width (bin == width: dropped)."""
    acc = values.new_zeros(values.shape[0], width + 1).scatter_add_(1, bins, values)
    return acc[:, :width].cumsum(1)


def _in_block_quad(gram: torch.Tensor, w: torch.Tensor, bins: torch.Tensor, width: int) -> torch.Tensor:
    """(C, width): D_q^T M D_q with D_q = w masked to bins <= q (each channel's in-block weights only)."""
    inside = bins < width
    sizes = inside.sum(1)
    size = int(sizes.max()) if sizes.numel() else 0
    result = w.new_zeros(w.shape[0], width)
    if size == 0:
        return result
    idx = torch.argsort((~inside).to(torch.int8), dim=1, stable=True)[:, :size]  # in-block entries first
    valid = torch.arange(size) < sizes[:, None]
    upto = (torch.gather(bins, 1, idx)[:, :, None] <= torch.arange(width)) & valid[:, :, None]
    weighted = (upto * (torch.gather(w, 1, idx) * valid)[:, :, None]).to(gram.dtype)  # D_q on in-block entries
    flat_gram, dim, idx = gram.reshape(-1), gram.shape[0], idx.to(torch.int32)
    chunk = max(1, GATHER_ELEMENTS // (size * size))
    for c in range(0, w.shape[0], chunk):
        i = idx[c:c + chunk]
        sub = flat_gram.index_select(0, (i[:, :, None] * dim + i[:, None, :]).reshape(-1)).view(-1, size, size)
        part = weighted[c:c + chunk]
        result[c:c + chunk] = (torch.bmm(sub, part) * part).sum(1, dtype=torch.float64)
    return result
