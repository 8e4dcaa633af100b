"""Per-channel output sums of an affine layer pruned to every level, from its patch Gram matrix.

A layer with y[n, c] = w_c . P_n + b_c (patches.py), pruned by removing the weights u_c (w_c masked to the removed
entries), outputs y[n, c] - u_c . P_n. Over the calibration rows n, with M = sum_n P_n P_n^T and m = sum_n P_n:

    sum_n  (y - u.P)   = sum_n y   - m . u
    sum_n  (y - u.P)^2 = sum_n y^2 - 2 u . (M w + b m) + u^T M u

(the middle term is sum_n y (u.P) with y = w.P + b). Magnitude masks are nested: level k removes the weights whose
rank in the layer's global magnitude order (magnitude_order) is below count_k. So every level follows from M, m, the
weights and the ranks, whatever the number of calibration rows, and the levels cost no network pass.
"""
from __future__ import annotations

from typing import Sequence

import torch


def level_sums(*, gram: torch.Tensor, patch_sum: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               rank: torch.Tensor, counts: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three level-dependent terms above, for one group of output channels.

    Args:
        gram: M, (J, J), float64.
        patch_sum: m, (J,).
        weight: w, (C, J).
        bias: b, (C,).
        rank: (C, J) rank of each weight in the global magnitude order of its layer.
        counts: Number of weights the layer loses at each level.

    Returns:
        (lin, cross, quad), each (levels, C) float64: m . u, u . (M w + b m) and u^T M u, where u is w masked to
        rank < count.
    """
    w = weight.to(torch.float64)
    m = patch_sum.to(torch.float64)
    pull = w @ gram + bias.to(torch.float64)[:, None] * m  # rows: M w_c + b_c m (M is symmetric)
    lin, cross, quad = (torch.zeros(len(counts), w.shape[0], dtype=torch.float64) for _ in range(3))
    for k, count in enumerate(counts):
        if count <= 0:
            continue
        u = w * (rank < count)
        lin[k] = u @ m
        cross[k] = (u * pull).sum(1)
        quad[k] = ((u @ gram) * u).sum(1)
    return lin, cross, quad
