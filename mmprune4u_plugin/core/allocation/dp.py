"""Dynamic-programming allocation (MMPrune4U step 2; also RD when the costs are the task distortion alone).

Under additivity of the per-layer costs, the allocation is a knapsack: minimise sum_l C_l(s_l) subject to
sum_l n_l * (1 - s_l) <= B = N - round(S * N) survivors. The survivor budget is cut into T bins and a layer's
survivors are rounded UP to whole bins, so the chosen levels never miss the target; the few surplus zeros this
rounding leaves are then given back where the cost falls fastest, so the global target is met exactly.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import AllocationProblem, InfeasibleAllocationError


class DPSolution(NamedTuple):
    """The DP's chosen level per layer, before the exact fix-up.

    ``levels`` index each layer's row of the level table: 0..K-1 are the grid points, K is s_min and K+1 is s_max
    (the bounds are levels only when they are not on the grid).
    """
    levels: np.ndarray
    sparsities: np.ndarray
    zeros: np.ndarray
    cost: float


def _validate(problem: AllocationProblem, costs: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grid = np.asarray(grid, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ValueError(f'`grid` must be a non-empty finite 1-D array, but got grid: {grid}')
    if grid[0] != 0.0 or np.any(np.diff(grid) <= 0) or grid[-1] > 1.0:
        raise ValueError(f'`grid` must increase strictly from 0 to at most 1, but got grid: {grid}')
    if costs.shape != (len(problem.names), grid.size):
        raise ValueError(f'`costs` must have shape {(len(problem.names), grid.size)} (layers, levels), '
                         f'but got costs.shape: {costs.shape}')
    bad = np.flatnonzero(~np.all(np.isfinite(costs), axis=1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f'`costs` of layer {problem.names[i]!r} must be finite, but got costs[{i}]: {costs[i]}')
    return costs, grid


def level_table(problem: AllocationProblem, costs: np.ndarray,
                grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-layer allowed levels: (sparsity [L, K+2], zero count [L, K+2], cost [L, K+2], +inf where not allowed).

    Grid points inside [s_min, s_max'] with s_max' = min(s_max, grid[-1]) are allowed; s_min and s_max' are added
    when not on the grid, with costs C_l(s) linearly interpolated. Counts are round(n_l * s) clipped to the integer
    bounds [ceil(s_min * n_l), floor(s_max * n_l)], so every level is a valid integer allocation of its layer.
    """
    lo, hi = problem.s_min, np.minimum(problem.s_max, grid[-1])
    above = np.flatnonzero(problem.s_min > grid[-1])
    if above.size:
        i = int(above[0])
        raise InfeasibleAllocationError(f'layer {problem.names[i]!r} has s_min {lo[i]} above the grid\'s last '
                                        f'level {grid[-1]}: no cost is known there')
    L, K = costs.shape
    s = np.concatenate([np.broadcast_to(grid, (L, K)), lo[:, None], hi[:, None]], axis=1)
    c = np.concatenate([costs, np.array([[np.interp(lo[i], grid, costs[i]), np.interp(hi[i], grid, costs[i])]
                                         for i in range(L)])], axis=1)
    allowed = (s >= lo[:, None]) & (s <= hi[:, None])
    allowed[:, K] &= ~np.isin(lo, grid)
    allowed[:, K + 1] &= ~np.isin(hi, grid) & (hi != lo)
    zeros = np.clip(np.rint(s * problem.numels[:, None]).astype(np.int64),
                    problem.min_zeros[:, None], problem.max_zeros[:, None])
    return s, zeros, np.where(allowed, c, np.inf)


def solve_levels(problem: AllocationProblem, costs: np.ndarray, grid: np.ndarray, *,
                 num_bins: int = 10_000) -> DPSolution:
    """Knapsack DP over the survivor budget; returns the optimal levels and their total cost.

    With T = min(num_bins, B) bins of b = B / T weights, level k of layer l, with z_{l,k} zeros and
    m_{l,k} = n_l - z_{l,k} survivors, uses c_{l,k} = ceil(m_{l,k} / b) bins (exact integer arithmetic), and

        F_0(0) = 0, F_0(t > 0) = +inf,
        F_l(t) = min_k F_{l-1}(t - c_{l,k}) + C_l(s_k)      (t = 0..T),
        optimum = min_t F_L(t).

    Vectorised over t (one shifted minimum per distinct bin count and layer): O(L K T) time. The F_l are kept
    (8 (L+1)(T+1) bytes) and the backtracking re-derives each layer's argmin from them, which halves the work per
    level compared with tracking an argmin array. sum_l m_l <= b * sum_l c_l <= B holds for the answer, so its
    zeros reach the target. Raises InfeasibleAllocationError when no level choice fits.
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f'`num_bins` must be a positive int, but got num_bins: {num_bins!r}')
    costs, grid = _validate(problem, costs, grid)
    lev_s, lev_k, lev_c = level_table(problem, costs, grid)
    budget = problem.total - problem.target_zeros
    T = int(min(num_bins, budget))
    survivors = problem.numels[:, None] - lev_k
    bins = (survivors * T + budget - 1) // budget if budget > 0 else np.where(survivors == 0, 0, 1)
    usable = np.isfinite(lev_c) & (bins <= T)
    L = len(problem.names)
    history = np.empty((L + 1, T + 1))
    history[0] = np.inf
    history[0, 0] = 0.0
    buf = np.empty(T + 1)
    t_lo = t_hi = 0  # every finite F_{l-1}(t) has t_lo <= t <= t_hi
    for l in range(L):
        ks = np.flatnonzero(usable[l])
        if ks.size == 0:
            raise InfeasibleAllocationError(
                f'layer {problem.names[l]!r} has no level that fits the budget of {budget} surviving weights '
                f'(its highest level is {np.max(np.where(np.isfinite(lev_c[l]), lev_s[l], 0.0))}, grid max {grid[-1]})')
        order = np.lexsort((lev_c[l, ks], bins[l, ks]))
        cb, cc = bins[l, ks][order], lev_c[l, ks][order]
        first = np.r_[True, cb[1:] != cb[:-1]]  # the cheapest level of each distinct bin count
        prev, cur = history[l], history[l + 1]
        cur.fill(np.inf)
        for c, cost in zip(cb[first].tolist(), cc[first].tolist()):
            a, e = t_lo + c, min(t_hi + c, T)
            if a > T:
                break
            np.add(prev[t_lo:e - c + 1], cost, out=buf[:e - a + 1])
            np.minimum(cur[a:e + 1], buf[:e - a + 1], out=cur[a:e + 1])
        t_lo, t_hi = t_lo + int(cb[0]), min(T, t_hi + int(cb[-1]))
    if not np.isfinite(history[L]).any():
        raise InfeasibleAllocationError(f'no choice of levels reaches target {problem.target} within the bounds '
                                        f'and the grid (grid max {grid[-1]})')
    t = int(np.argmin(history[L]))
    best = float(history[L, t])
    levels = np.empty(L, dtype=np.int64)
    for l in range(L - 1, -1, -1):  # re-derive the argmin: the same float additions give the same bits
        ks = np.flatnonzero(usable[l] & (bins[l] <= t))
        hit = ks[history[l, t - bins[l, ks]] + lev_c[l, ks] == history[l + 1, t]]
        levels[l] = hit[0]
        t -= int(bins[l, hit[0]])
    rows = np.arange(L)
    return DPSolution(levels, lev_s[rows, levels], lev_k[rows, levels], best)


def _curve_at(k: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation C_l(k_l) of the cost curves given at counts x [L, K] (clamped at the ends)."""
    if x.shape[1] == 1:
        return c[:, 0].copy()
    rows = np.arange(x.shape[0])
    j = np.clip((x < k[:, None]).sum(axis=1), 1, x.shape[1] - 1)
    x0, x1 = x[rows, j - 1], x[rows, j]
    frac = np.clip((k - x0) / (x1 - x0), 0.0, 1.0)
    return c[rows, j - 1] + frac * (c[rows, j] - c[rows, j - 1])


def give_back(zeros: np.ndarray, problem: AllocationProblem, costs: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Un-prune the surplus zeros sum_l k_l - round(S * N) >= 0, never below s_min, cheapest first.

    Repeatedly picks the layer whose cost drops the most per weight given back, (C_l(k_l) - C_l(k')) / (k_l - k'),
    over the chunk down to k' = the grid point just below k_l (counts n_l * s_j, curves linear in between).
    """
    zeros = np.asarray(zeros, dtype=np.int64).copy()
    x = problem.numels[:, None] * grid[None, :].astype(np.float64)
    surplus = int(zeros.sum()) - problem.target_zeros
    while surplus > 0:
        below = np.where(x < zeros[:, None], x, -np.inf).max(axis=1)
        stop = np.maximum(np.ceil(below - 1e-9), problem.min_zeros)
        stop = np.where(stop >= zeros, zeros - 1, stop).astype(np.int64)
        avail = zeros - stop
        drop = (_curve_at(zeros, x, costs) - _curve_at(stop, x, costs)) / np.maximum(avail, 1)
        drop[zeros <= problem.min_zeros] = -np.inf
        i = int(np.argmax(drop))
        give = min(int(avail[i]), surplus)
        zeros[i] -= give
        surplus -= give
    return zeros


def allocate(problem: AllocationProblem, costs: np.ndarray, grid: np.ndarray, *,
             num_bins: int = 10_000) -> dict[str, float]:
    """Cost-minimising per-layer sparsities that meet the global target exactly. Returns {name: k_l / n_l}.

    Args:
        problem: Layers, target and bounds.
        costs: [L, K] cost C_l(grid[k]) of pruning only layer l to sparsity grid[k]; finite.
        grid: [K] sparsity levels, strictly increasing, grid[0] == 0.
        num_bins: Number of bins T of the survivor budget. Defaults to 10_000.
    """
    solution = solve_levels(problem, costs, grid, num_bins=num_bins)
    costs, grid = _validate(problem, costs, grid)
    return problem.to_sparsities(give_back(solution.zeros, problem, costs, grid))
