"""From layers + evidence (curves or weights) + constraints to per-layer sparsities, for any allocator.

Per-modality budgets fix the sparsity of a modality's layers as a group: each budgeted modality is allocated as its
own sub-problem, and the other layers share the zeros left to reach the global target.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from .allocation import AllocatorName, get_allocator, problem_from_layers
from .allocation.base import InfeasibleAllocationError
from .curves import DistortionCurves, RegulariserForm
from .layers import PrunableLayer


@dataclass(frozen=True)
class AllocationSpec:
    """What to allocate.

    Attributes:
        sparsity: Global target in [0, 1).
        allocator: One of :class:`AllocatorName`.
        beta: Weight of the LSI regulariser in the DP cost (``mmprune4u`` only; ``rd`` uses 0).
        regulariser: ``local`` or ``downstream``.
        modality_weights: w_m in the regulariser.
        layer_bounds: Regex pattern -> (s_min, s_max); the first matching pattern wins.
        keep_dense: Regex patterns of layers left dense.
        modality_budgets: Modality -> exact group sparsity.
        num_bins: DP budget bins T.
    """

    sparsity: float
    allocator: str = AllocatorName.MMPRUNE4U
    beta: float = 1.0
    regulariser: str = RegulariserForm.LOCAL
    modality_weights: Mapping[str, float] = field(default_factory=dict)
    layer_bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    keep_dense: Sequence[str] = ()
    modality_budgets: Mapping[str, float] = field(default_factory=dict)
    num_bins: int = 10_000

    @property
    def needs_curves(self) -> bool:
        return AllocatorName(self.allocator) in (AllocatorName.MMPRUNE4U, AllocatorName.RD)


def resolve_bounds(layers: Sequence[PrunableLayer], spec: AllocationSpec,
                   floor: Mapping[str, float] | None = None) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """Per-name bounds and keep-dense names from the spec's patterns; ``floor`` raises s_min (sparsity never drops)."""
    names = [lay.name for lay in layers]
    for arg, patterns in (('layer_bounds', list(spec.layer_bounds)), ('keep_dense', list(spec.keep_dense))):
        unused = [p for p in patterns if not any(re.search(p, n) for n in names)]
        if unused:
            raise ValueError(f'`{arg}` patterns {unused} match no prunable layer')
    bounds, keep = {}, []
    for name in names:
        lo, hi = next((tuple(b) for p, b in spec.layer_bounds.items() if re.search(p, name)), (0.0, 1.0))
        if any(re.search(p, name) for p in spec.keep_dense):
            keep.append(name)
        if floor and floor.get(name, 0.0) > 0:
            lo = max(lo, floor[name])
            if name in keep or hi < lo:
                raise InfeasibleAllocationError(f'layer {name!r} is already at sparsity {floor[name]:.4f}, above its '
                                                f'upper bound {0.0 if name in keep else hi}')
        bounds[name] = (lo, hi)
    return bounds, keep


def allocate_layers(layers: Sequence[PrunableLayer], spec: AllocationSpec, *,
                    curves: DistortionCurves | None = None, weights: Mapping[str, torch.Tensor] | None = None,
                    floor: Mapping[str, float] | None = None) -> dict[str, float]:
    """Per-layer sparsities meeting ``spec`` exactly (to one weight) for the whole set of ``layers``."""
    name = AllocatorName(spec.allocator)
    fn = get_allocator(name)
    bounds, keep = resolve_bounds(layers, spec, floor)
    unknown = sorted(set(spec.modality_budgets) - {lay.modality for lay in layers})
    if unknown:
        raise ValueError(f'`modality_budgets` name modalities without layers: {unknown}')
    costs = None
    if spec.needs_curves:
        if curves is None or not curves.matches(layers, curves.grid):
            raise ValueError(f'allocator {name.value!r} needs distortion curves measured for these layers')
        costs = curves.cost(spec.beta if name is AllocatorName.MMPRUNE4U else 0.0, spec.regulariser,
                            spec.modality_weights, target=spec.sparsity)
    groups = [[i for i, lay in enumerate(layers) if lay.modality == m] for m in spec.modality_budgets]
    rest = [i for i, lay in enumerate(layers) if lay.modality not in spec.modality_budgets]
    total = sum(lay.numel for lay in layers)
    out: dict[str, float] = {}
    zeros_left = int(round(spec.sparsity * total))
    targets = list(spec.modality_budgets.values())
    for idx, target in zip(groups, targets):
        out.update(_solve(layers, idx, target, spec, fn, bounds, keep, costs, curves, weights))
        zeros_left -= sum(int(round(out[layers[i].name] * layers[i].numel)) for i in idx)
    if rest:
        n_rest = sum(layers[i].numel for i in rest)
        if not 0 <= zeros_left < n_rest:
            raise InfeasibleAllocationError(f'modality budgets {dict(spec.modality_budgets)} leave '
                                            f'{zeros_left} zeros for {n_rest} other weights')
        out.update(_solve(layers, rest, zeros_left / n_rest, spec, fn, bounds, keep, costs, curves, weights))
    elif zeros_left != 0:
        raise InfeasibleAllocationError('modality budgets cover every layer but do not add up to `sparsity`')
    return {lay.name: out[lay.name] for lay in layers}


def _solve(layers, idx, target, spec, fn, bounds, keep, costs, curves, weights) -> dict[str, float]:
    sub = [layers[i] for i in idx]
    problem = problem_from_layers([lay.name for lay in sub], [lay.numel for lay in sub], target,
                                  bounds={lay.name: bounds[lay.name] for lay in sub},
                                  keep_dense=[lay.name for lay in sub if lay.name in keep],
                                  shapes=[lay.shape for lay in sub], modalities=[lay.modality for lay in sub])
    if costs is not None:
        return fn(problem, costs[np.asarray(idx)], curves.grid, num_bins=spec.num_bins)
    if AllocatorName(spec.allocator) in (AllocatorName.GLOBAL, AllocatorName.LAMP):
        if weights is None:
            raise ValueError(f'allocator {spec.allocator!r} needs the weights')
        return fn(problem, {lay.name: weights[lay.name] for lay in sub})
    return fn(problem)
