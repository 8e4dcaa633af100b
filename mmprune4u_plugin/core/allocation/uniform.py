"""Uniform allocation: every layer gets the same sparsity (clipped to its own bounds).

The simplest baseline, and the one every adaptive method must beat. With bounds, a single s no longer gives the
target directly, so s is found by bisection on the (non-decreasing) total zero count, then rounded exactly.
"""
from __future__ import annotations

import numpy as np

from .base import AllocationProblem, round_counts, solve_scalar


def uniform_zeros(problem: AllocationProblem) -> np.ndarray:
    """Integer zero counts of the uniform allocation.

    s* = min {s in [0, 1] : sum_l n_l * clip(s, s_min_l, s_max_l) >= target * N},
    k_l = n_l * clip(s*, s_min_l, s_max_l), rounded by ``round_counts`` so that sum_l k_l == round(target * N).
    """
    n = problem.numels.astype(np.float64)

    def total_zeros(s: float) -> float:
        return float(np.sum(n * np.clip(s, problem.s_min, problem.s_max)))

    s = solve_scalar(total_zeros, float(problem.target_zeros), 0.0, 1.0)
    return round_counts(n * np.clip(s, problem.s_min, problem.s_max), problem)


def allocate(problem: AllocationProblem) -> dict[str, float]:
    """Same sparsity for every layer, within its bounds; exact global target. Returns {name: k_l / n_l}."""
    return problem.to_sparsities(uniform_zeros(problem))
