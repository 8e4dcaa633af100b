"""Per-layer sparsity allocators: one pure function per file, all returning {name: k_l / n_l} with an exact target.

Signatures differ only in the evidence each allocator needs:
``uniform``, ``uniform_plus``, ``erk``: ``allocate(problem)``; ``global``, ``lamp``: ``allocate(problem, weights)``;
``dp``: ``allocate(problem, costs, grid, *, num_bins)``. The user-facing names (:class:`AllocatorName`) map onto them
with :func:`get_allocator`; ``mmprune4u`` and ``rd`` are both the DP and differ only in the costs passed to it
(task distortion plus the log-Sobolev regulariser, or task distortion alone).
"""
from __future__ import annotations

import enum
from types import MappingProxyType
from typing import Callable, Mapping

from . import dp, erk, global_magnitude, lamp, uniform, uniform_plus
from .base import AllocationProblem, InfeasibleAllocationError, problem_from_layers, round_counts
from .dp import DPSolution, solve_levels
from .scores import select_global


class AllocatorName(enum.StrEnum):
    """Allocator names accepted in configs (e.g. ``MMPrune4UHook(allocator='lamp')``)."""

    MMPRUNE4U = 'mmprune4u'
    RD = 'rd'
    LAMP = 'lamp'
    GLOBAL = 'global'
    UNIFORM = 'uniform'
    UNIFORM_PLUS = 'uniform_plus'
    ERK = 'erk'


ALLOCATORS: Mapping[str, Callable[..., dict[str, float]]] = MappingProxyType({
    'uniform': uniform.allocate,
    'uniform_plus': uniform_plus.allocate,
    'global': global_magnitude.allocate,
    'lamp': lamp.allocate,
    'erk': erk.allocate,
    'dp': dp.allocate,
})

_FUNCTION_OF_NAME: Mapping[AllocatorName, str] = MappingProxyType({
    AllocatorName.MMPRUNE4U: 'dp',
    AllocatorName.RD: 'dp',
    AllocatorName.LAMP: 'lamp',
    AllocatorName.GLOBAL: 'global',
    AllocatorName.UNIFORM: 'uniform',
    AllocatorName.UNIFORM_PLUS: 'uniform_plus',
    AllocatorName.ERK: 'erk',
})


def get_allocator(name: str | AllocatorName) -> Callable[..., dict[str, float]]:
    """The allocate function behind a user-facing allocator name (``mmprune4u`` and ``rd`` give the DP)."""
    try:
        key = AllocatorName(name)
    except ValueError:
        raise ValueError(f'`allocator` must be one of {[n.value for n in AllocatorName]}, '
                         f'but got allocator: {name!r}') from None
    return ALLOCATORS[_FUNCTION_OF_NAME[key]]


__all__ = [
    'ALLOCATORS', 'AllocationProblem', 'AllocatorName', 'DPSolution', 'InfeasibleAllocationError',
    'get_allocator', 'problem_from_layers', 'round_counts', 'select_global', 'solve_levels',
]
