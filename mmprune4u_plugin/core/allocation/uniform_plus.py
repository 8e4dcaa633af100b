"""Uniform+ allocation (Gale, Elsen and Hooker 2019, "The State of Sparsity in Deep Neural Networks").

Uniform, except that the first layer is kept dense and the last layer is pruned to at most 80%: the first layer
has few weights and sees raw inputs, the last one maps straight to the outputs, and both were found to lose accuracy
disproportionately when pruned like the rest. The two rules tighten the problem's own bounds.
"""
from __future__ import annotations

import dataclasses

from . import uniform
from .base import AllocationProblem, InfeasibleAllocationError

LAST_LAYER_MAX_SPARSITY = 0.8


def tightened_problem(problem: AllocationProblem, *,
                      last_max: float = LAST_LAYER_MAX_SPARSITY) -> AllocationProblem:
    """The problem with s_max[0] = 0 and s_max[-1] = min(s_max[-1], ``last_max``).

    Raises:
        InfeasibleAllocationError: a lower bound conflicts with the rules, or the target no longer fits.
    """
    if not 0.0 <= last_max <= 1.0:
        raise ValueError(f'`last_max` must be in [0, 1], but got last_max: {last_max}')
    s_min, s_max = problem.s_min.copy(), problem.s_max.copy()
    s_max[-1] = min(s_max[-1], last_max)
    s_max[0] = 0.0
    for i in {0, len(s_max) - 1}:
        if s_min[i] > s_max[i]:
            raise InfeasibleAllocationError(
                f'uniform+ caps layer {problem.names[i]!r} at sparsity {s_max[i]}, but its s_min is {s_min[i]}')
    try:
        return dataclasses.replace(problem, s_min=s_min, s_max=s_max)
    except InfeasibleAllocationError as err:
        raise InfeasibleAllocationError(f'uniform+ keeps layer {problem.names[0]!r} dense and caps layer '
                                        f'{problem.names[-1]!r} at {last_max}: {err}') from err


def allocate(problem: AllocationProblem) -> dict[str, float]:
    """Uniform sparsity with layer 0 dense and layer -1 at most 80%; exact global target.

    s* = min {s : sum_l n_l * clip(s, s_min_l, s_max'_l) >= target * N}, with s_max'_0 = 0 and
    s_max'_{L-1} = min(s_max_{L-1}, 0.8); the result also satisfies the original bounds.
    """
    tight = tightened_problem(problem)
    return tight.to_sparsities(uniform.uniform_zeros(tight))
