"""Erdős–Rényi-Kernel allocation (Evci, Gale, Menick, Castro and Elsen 2020, "Rigging the Lottery", RigL).

ERK sets each layer's density proportional to (sum of its dimensions) / (product of its dimensions): large layers,
which are the most redundant, get sparser, small ones (first conv, heads) stay denser. It only needs the shapes.
"""
from __future__ import annotations

import math

import numpy as np

from .base import AllocationProblem, round_counts, solve_scalar


def erk_raw_density(shape: tuple[int, ...]) -> float:
    """Unscaled ERK density of a weight of ``shape``: (sum_i d_i) / (prod_i d_i)."""
    if len(shape) == 0 or any(int(d) <= 0 for d in shape):
        raise ValueError(f'ERK needs a non-empty shape with positive dims, but got shape: {tuple(shape)}')
    return float(sum(shape)) / float(math.prod(shape))


def erk_densities(problem: AllocationProblem) -> np.ndarray:
    """Real-valued ERK densities that meet the target (before integer rounding).

    density_l(eps) = clip(eps * (sum of dims_l) / (prod of dims_l), 1 - s_max_l, 1 - s_min_l), with eps found by
    bisection so that sum_l n_l * density_l(eps) = N - round(target * N) (the kept count is non-decreasing in eps).
    """
    if problem.shapes is None:
        raise ValueError('ERK needs the weight shapes, but got problem.shapes: None')
    raw = np.array([erk_raw_density(s) for s in problem.shapes], dtype=np.float64)
    n = problem.numels.astype(np.float64)
    d_lo, d_hi = 1.0 - problem.s_max, 1.0 - problem.s_min

    def kept(eps: float) -> float:
        return float(np.sum(n * np.clip(eps * raw, d_lo, d_hi)))

    eps_max = float(np.max(1.0 / raw))  # every layer at density >= 1 here, so kept(eps_max) is the most possible
    eps = solve_scalar(kept, float(problem.total - problem.target_zeros), 0.0, eps_max)
    return np.clip(eps * raw, d_lo, d_hi)


def allocate(problem: AllocationProblem) -> dict[str, float]:
    """ERK densities, scaled to meet the target within bounds; exact global target. Returns {name: k_l / n_l}.

    k_l = n_l * (1 - density_l), rounded by ``round_counts`` so that sum_l k_l == round(target * N).

    Raises:
        ValueError: ``problem.shapes`` is None or a shape has a non-positive dimension.
    """
    return problem.to_sparsities(round_counts(problem.numels * (1.0 - erk_densities(problem)), problem))
