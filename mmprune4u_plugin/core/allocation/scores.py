"""One global threshold over per-layer scores, exact and within per-layer bounds.

Shared by the score-based allocators (global magnitude, LAMP): they differ only in the score each weight gets.
Working on per-layer *sorted* score arrays makes the bounds easy: layer l must drop its ``min_zeros`` lowest-score
weights and may drop at most ``max_zeros``, so only sorted positions min_zeros..max_zeros-1 compete globally.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from .base import AllocationProblem


def sorted_magnitudes(weights: Mapping[str, torch.Tensor], problem: AllocationProblem) -> list[np.ndarray]:
    """|w| of each layer of ``problem`` (in its order), flattened, as float64, sorted ascending."""
    out = []
    for name, n in zip(problem.names, problem.numels):
        if name not in weights:
            raise ValueError(f'`weights` has no tensor for layer {name!r}')
        w = weights[name]
        if w.numel() != int(n):
            raise ValueError(f'`weights[{name!r}]` has {w.numel()} elements, but the problem says numel: {int(n)}')
        mags = torch.sort(w.detach().reshape(-1).abs().to(device='cpu', dtype=torch.float64)).values
        out.append(mags.numpy())
    return out


def select_global(sorted_scores: Sequence[np.ndarray], problem: AllocationProblem) -> np.ndarray:
    """Per-layer zero counts k_l from one global threshold on the scores, honouring the bounds exactly.

    k_l = min_zeros_l + #{candidates of layer l among the E globally smallest}, where the candidates of layer l are
    its sorted scores at positions min_zeros_l .. max_zeros_l - 1 and E = target_zeros - sum_l min_zeros_l.
    Ties at the threshold go by layer order, then by position (a stable sort of the concatenated candidates).

    Args:
        sorted_scores: One 1-D array per layer (problem order), of length n_l, sorted ascending.
        problem: The allocation problem.
    """
    if len(sorted_scores) != len(problem.names):
        raise ValueError(f'`sorted_scores` must have {len(problem.names)} arrays, but got {len(sorted_scores)}')
    for name, n, a in zip(problem.names, problem.numels, sorted_scores):
        if a.ndim != 1 or a.shape[0] != n:
            raise ValueError(f'scores of layer {name!r} must be 1-D with {int(n)} entries, but got shape {a.shape}')
        if np.isnan(a).any():
            raise ValueError(f'scores of layer {name!r} contain NaN')
        if a.size > 1 and np.any(a[1:] < a[:-1]):
            raise ValueError(f'scores of layer {name!r} must be sorted ascending')
    lo, hi = problem.min_zeros, problem.max_zeros
    extra = problem.target_zeros - int(lo.sum())
    if extra == 0:
        return lo.copy()
    segments = [a[int(i):int(j)] for a, i, j in zip(sorted_scores, lo, hi)]
    candidates = np.concatenate(segments)
    threshold = np.partition(candidates, extra - 1)[extra - 1]
    below = np.array([np.searchsorted(s, threshold, side='left') for s in segments], dtype=np.int64)
    ties = np.array([np.searchsorted(s, threshold, side='right') for s in segments], dtype=np.int64) - below
    left = extra - int(below.sum())  # 1 <= left <= ties.sum(): the threshold itself is among the E smallest
    ties_before = np.cumsum(ties) - ties
    from_ties = np.clip(left - ties_before, 0, ties)
    return lo + below + from_ties
