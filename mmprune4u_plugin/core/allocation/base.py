"""The allocation problem shared by every allocator, and the integer bookkeeping they all need.

An allocator turns a global target sparsity S into per-layer sparsities s_l. Every allocator in this package returns
sparsities of the form k_l / n_l with integer zero counts k_l, and sum_l k_l == round(S * sum_l n_l): the global
target is met to one weight, and ``masks.magnitude_mask`` turns s_l back into exactly k_l zeros.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np


class InfeasibleAllocationError(ValueError):
    """The target sparsity cannot be reached within the per-layer bounds."""


@dataclass(frozen=True)
class AllocationProblem:
    """Layers, their sizes, the global target and the per-layer sparsity bounds.

    Attributes:
        names: Canonical parameter names, one per prunable layer.
        numels: Number of weights of each layer.
        target: Global sparsity in [0, 1): fraction of all listed weights to zero.
        s_min: Per-layer lower bound on sparsity (defaults to 0).
        s_max: Per-layer upper bound on sparsity (defaults to 1; keep-dense layers have 0).
        shapes: Weight shapes (needed by ERK and uniform+ only).
        modalities: Modality group of each layer, or None.
    """

    names: tuple[str, ...]
    numels: np.ndarray
    target: float
    s_min: np.ndarray = field(default=None)  # type: ignore[assignment]
    s_max: np.ndarray = field(default=None)  # type: ignore[assignment]
    shapes: tuple[tuple[int, ...], ...] | None = None
    modalities: tuple[str | None, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.names)
        object.__setattr__(self, 'names', tuple(self.names))
        object.__setattr__(self, 'numels', np.asarray(self.numels, dtype=np.int64))
        lo = np.zeros(n) if self.s_min is None else np.asarray(self.s_min, dtype=np.float64)
        hi = np.ones(n) if self.s_max is None else np.asarray(self.s_max, dtype=np.float64)
        object.__setattr__(self, 's_min', lo)
        object.__setattr__(self, 's_max', hi)
        if n == 0:
            raise ValueError('AllocationProblem needs at least one layer, but got none')
        if len(set(self.names)) != n:
            raise ValueError('AllocationProblem `names` must be unique')
        if self.numels.shape != (n,) or lo.shape != (n,) or hi.shape != (n,):
            raise ValueError(f'`numels`, `s_min` and `s_max` must each have {n} entries')
        if np.any(self.numels <= 0):
            raise ValueError(f'every layer needs at least one weight, but got numels: {self.numels.tolist()}')
        if not 0.0 <= float(self.target) < 1.0:
            raise ValueError(f'`target` must be in [0, 1), but got target: {self.target}')
        bad = np.flatnonzero((lo < 0) | (hi > 1) | (lo > hi) | ~np.isfinite(lo) | ~np.isfinite(hi))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f'bounds of layer {self.names[i]!r} must satisfy 0 <= s_min <= s_max <= 1, '
                             f'but got s_min: {lo[i]}, s_max: {hi[i]}')
        if self.shapes is not None and len(self.shapes) != n:
            raise ValueError(f'`shapes` must have {n} entries')
        if self.modalities is not None and len(self.modalities) != n:
            raise ValueError(f'`modalities` must have {n} entries')
        empty = np.flatnonzero(self.min_zeros > self.max_zeros)
        if empty.size:
            i = int(empty[0])
            raise InfeasibleAllocationError(
                f'layer {self.names[i]!r} has no integer zero count within its bounds: numel {int(self.numels[i])}, '
                f's_min: {lo[i]}, s_max: {hi[i]}')
        total_lo, total_hi = int(self.min_zeros.sum()), int(self.max_zeros.sum())
        if not total_lo <= self.target_zeros <= total_hi:
            raise InfeasibleAllocationError(
                f'target sparsity {self.target} needs {self.target_zeros} zeros, but the per-layer bounds allow '
                f'only {total_lo}..{total_hi} zeros (sparsity {total_lo / self.total:.4f}..{total_hi / self.total:.4f})')

    @property
    def total(self) -> int:
        """Number of weights over all layers."""
        return int(self.numels.sum())

    @property
    def target_zeros(self) -> int:
        """Exact number of zeros the allocation must produce: round(target * total)."""
        return int(round(float(self.target) * self.total))

    @property
    def min_zeros(self) -> np.ndarray:
        """Per-layer least zero count allowed by ``s_min`` (rounded up so the bound holds)."""
        return np.ceil(self.s_min * self.numels - 1e-9).astype(np.int64)

    @property
    def max_zeros(self) -> np.ndarray:
        """Per-layer largest zero count allowed by ``s_max`` (rounded down so the bound holds)."""
        return np.floor(self.s_max * self.numels + 1e-9).astype(np.int64)

    def to_sparsities(self, zeros: np.ndarray) -> dict[str, float]:
        """Per-layer zero counts -> {name: k_l / n_l}, after checking the counts are a valid answer."""
        zeros = np.asarray(zeros, dtype=np.int64)
        if zeros.sum() != self.target_zeros:
            raise AssertionError(f'allocation has {int(zeros.sum())} zeros, expected {self.target_zeros}')
        if np.any(zeros < self.min_zeros) or np.any(zeros > self.max_zeros):
            raise AssertionError('allocation violates the per-layer bounds')
        return {name: float(k) / float(n) for name, k, n in zip(self.names, zeros, self.numels)}


def round_counts(float_zeros: np.ndarray, problem: AllocationProblem,
                 priority: np.ndarray | None = None) -> np.ndarray:
    """Round real-valued per-layer zero counts to integers that sum to ``problem.target_zeros`` exactly.

    Counts are clipped to the bounds and floored; the remaining zeros go one at a time (round robin, in order of
    ``priority``, default: largest fractional part first) to layers that still have room, or are taken back from
    layers above their lower bound when the floored counts overshoot.
    """
    lo, hi = problem.min_zeros, problem.max_zeros
    x = np.clip(np.asarray(float_zeros, dtype=np.float64), lo, hi)
    zeros = np.clip(np.floor(x + 1e-9).astype(np.int64), lo, hi)
    order_key = (x - zeros) if priority is None else np.asarray(priority, dtype=np.float64)
    order = np.argsort(-order_key, kind='stable')
    diff = problem.target_zeros - int(zeros.sum())
    while diff != 0:
        step = 1 if diff > 0 else -1
        room = (hi - zeros) if step > 0 else (zeros - lo)
        cand = order[room[order] > 0] if step > 0 else order[::-1][room[order[::-1]] > 0]
        if cand.size == 0:  # pragma: no cover - excluded by AllocationProblem's feasibility check
            raise InfeasibleAllocationError('cannot place the remaining zeros within the bounds')
        take = np.minimum(room[cand], max(1, abs(diff) // cand.size))
        for i, t in zip(cand, take):
            t = min(int(t), abs(diff))
            zeros[i] += step * t
            diff -= step * t
            if diff == 0:
                break
    return zeros


def solve_scalar(fn: Callable[[float], float], target: float, lo: float, hi: float, iters: int = 100) -> float:
    """Bisection for the x in [lo, hi] where the non-decreasing ``fn`` reaches ``target``."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if fn(mid) < target:
            lo = mid
        else:
            hi = mid
    return hi


def problem_from_layers(names: Sequence[str], numels: Sequence[int], target: float, *,
                        bounds: Mapping[str, tuple[float, float]] | None = None,
                        keep_dense: Sequence[str] = (), shapes=None, modalities=None) -> AllocationProblem:
    """Build an :class:`AllocationProblem` from per-name bounds and a keep-dense list."""
    bounds = dict(bounds or {})
    unknown = sorted((set(bounds) | set(keep_dense)) - set(names))
    if unknown:
        raise ValueError(f'bounds / keep_dense name layers that are not prunable: {unknown}')
    s_min = np.array([bounds.get(n, (0.0, 1.0))[0] for n in names], dtype=np.float64)
    s_max = np.array([0.0 if n in keep_dense else bounds.get(n, (0.0, 1.0))[1] for n in names], dtype=np.float64)
    if any(s_min[i] > 0 for i, n in enumerate(names) if n in keep_dense):
        raise InfeasibleAllocationError('a keep-dense layer also has a positive lower bound')
    return AllocationProblem(tuple(names), np.asarray(numels), float(target), s_min, s_max,
                             None if shapes is None else tuple(tuple(s) for s in shapes),
                             None if modalities is None else tuple(modalities))
