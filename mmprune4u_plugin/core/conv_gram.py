"""Patch Gram matrix of a stride-1 convolution without forming the patches, from lagged correlations.

For a 'valid' stride-1 conv (the input already padded, see patches.py) with kernel k and dilation d, the patch entry
(i, o) at output position n is x[i, n + d o]. The Gram block of kernel offsets (o, o') is

    M[o, o'] = sum_{n in O} x[:, n + d o] x[:, n + d o']^T = sum_{m in B_o} x[:, m] x[:, m + d (o' - o)]^T,

a lagged correlation over the box B_o = d o + O. All boxes with the same lag delta = o' - o share their middle, the
*core* (the intersection of the boxes of the offsets that have this lag): one product per lag over the core, plus,
per offset pair, thin slabs where B_o sticks out of the core (at most d (k - 1) wide in one dim). A 3x3 conv thus
costs 13 products of (positions x C_in x C_in) instead of the 41 that the Gram matrix of the im2col patches
(9 C_in wide) costs, and no patch is materialised. M[o', o] = M[o, o']^T fills the other half.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
import torch.nn.functional as F

SUM_ROWS = 8192  # positions summed in the input's dtype before the float64 accumulation


def conv_gram(x: torch.Tensor, kernel: Sequence[int],
              dilation: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(M, m, rows) of the patches of a stride-1 'valid' conv of ``x`` (B, C_in, S..), columns ordered (C_in, k..)
    like the conv weight: M (J, J) and m = patch sum (J,) in float64, rows = number of output positions.

    Positions are flattened (channel-last, zero margins), so a lag is a shift of the flat index and the core of a lag
    is one product of two contiguous views: the flat rows of the core's range in the first dim, minus the parts of
    those rows outside the core in the other dims (thin, gathered)."""
    nd, channels, batch = len(kernel), x.shape[1], x.shape[0]
    grid = Grid(x, kernel, dilation)
    offsets = list(itertools.product(*map(range, kernel)))
    where = {o: i for i, o in enumerate(offsets)}
    gram = torch.zeros(channels, len(offsets), channels, len(offsets), dtype=torch.float64)
    for delta in itertools.product(*[range(1 - k, k) for k in kernel]):
        if delta < (0,) * nd:  # the negative lags are the transposes of the positive ones
            continue
        allowed = [range(max(0, -dl), min(k, k - dl)) for dl, k in zip(delta, kernel)]
        shift = grid.flat_shift([d * dl for d, dl in zip(dilation, delta)])
        core_lo = [d * r[-1] for d, r in zip(dilation, allowed)]
        core_hi = [d * r[0] + o for d, r, o in zip(dilation, allowed, grid.outs)]
        empty = any(h <= low for low, h in zip(core_lo, core_hi))
        core = 0.0 if empty else grid.core_corr(core_lo, core_hi, shift)
        for o in itertools.product(*allowed):
            lo = [d * oi for d, oi in zip(dilation, o)]
            hi = [low + n for low, n in zip(lo, grid.outs)]
            block = grid.box_corr(lo, hi, shift) if empty else core + sum(  # the slabs of B_o outside the core
                grid.box_corr([*core_lo[:i], a, *lo[i + 1:]], [*core_hi[:i], b, *hi[i + 1:]], shift)
                for i in range(nd) for a, b in ((lo[i], core_lo[i]), (core_hi[i], hi[i])))
            other = tuple(oi + dl for oi, dl in zip(o, delta))
            gram[:, where[o], :, where[other]] = block
            if other != o:
                gram[:, where[other], :, where[o]] = torch.as_tensor(block).T
    sums = torch.stack([grid.box_sum([d * oi for d, oi in zip(dilation, o)]) for o in offsets], 1)
    return gram.reshape(channels * len(offsets), -1), sums.reshape(-1), batch * math.prod(grid.outs)


class Grid:
    """The input flattened channel-last with zero margins, and sums over boxes of it."""

    def __init__(self, x: torch.Tensor, kernel: Sequence[int], dilation: Sequence[int]) -> None:
        xl = x.detach().movedim(1, -1).contiguous()  # (B, S.., C_in)
        self.sizes = list(xl.shape[1:-1])
        self.strides = [math.prod(self.sizes[i + 1:]) for i in range(len(self.sizes))]
        self.outs = [s - d * (k - 1) for s, k, d in zip(self.sizes, kernel, dilation)]
        self.margin = self.flat_shift([d * (k - 1) for k, d in zip(kernel, dilation)])
        self.xl = xl
        self.total = xl.sum(tuple(range(xl.dim() - 1)), dtype=torch.float64)
        self.flat = F.pad(xl.reshape(xl.shape[0], -1, xl.shape[-1]), (0, 0, self.margin, self.margin))

    def flat_shift(self, shift: Sequence[int]) -> int:
        return sum(s * st for s, st in zip(shift, self.strides))

    def box_corr(self, lo: Sequence[int], hi: Sequence[int], shift: int) -> torch.Tensor | float:
        """sum over positions p of the box [lo, hi) of x[p] x[p + shift]^T (flat shift: rows may wrap)."""
        if any(h <= low for low, h in zip(lo, hi)):
            return 0.0
        axes = [torch.arange(low, h) * st for low, h, st in zip(lo, hi, self.strides)]
        index = sum(torch.meshgrid(*axes, indexing='ij')).reshape(-1) + self.margin
        a, b = self.flat[:, index], self.flat[:, index + shift]
        return (a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])).double()

    def core_corr(self, lo: Sequence[int], hi: Sequence[int], shift: int) -> torch.Tensor:
        """box_corr over [lo, hi) as the contiguous flat rows [lo_0, hi_0) minus their parts outside the box."""
        p0, p1 = self.margin + lo[0] * self.strides[0], self.margin + hi[0] * self.strides[0]
        rows = 0.0
        for p in range(p0, p1, SUM_ROWS):  # float64 between pieces: short float32 sums
            q = min(p + SUM_ROWS, p1)
            part = torch.bmm(self.flat[:, p:q].transpose(1, 2), self.flat[:, p + shift:q + shift])
            rows = rows + part.sum(0).double()
        nd = len(lo)
        for i in range(1, nd):
            for a, b in ((0, lo[i]), (hi[i], self.sizes[i])):
                rows = rows - self.box_corr([lo[0], *lo[1:i], a, *[0] * (nd - i - 1)],
                                            [hi[0], *hi[1:i], b, *self.sizes[i + 1:]], shift)
        return rows

    def box_sum(self, lo: Sequence[int]) -> torch.Tensor:
        """(C_in,) sum of x over the box [lo, lo + outs): the whole grid minus the slabs outside the box."""
        nd, total = len(lo), self.total
        for i in range(nd):
            for a, b in ((0, lo[i]), (lo[i] + self.outs[i], self.sizes[i])):
                if b > a:
                    box = (slice(None), *[slice(low, low + n) for low, n in zip(lo[:i], self.outs[:i])],
                           slice(a, b))
                    total = total - self.xl[box].sum(tuple(range(self.xl.dim() - 1)), dtype=torch.float64)
        return total
