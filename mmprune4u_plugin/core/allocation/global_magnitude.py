"""Global magnitude allocation: one threshold on |w| over all layers.

The classic baseline (e.g. Han et al. 2015 with a single global threshold): the per-layer sparsity is whatever
fraction of each layer falls below the global magnitude threshold. Unlike uniform, it adapts to layer scales, but it
is blind to how much each weight matters to the output.
"""
from __future__ import annotations

from typing import Mapping

import torch

from .base import AllocationProblem
from .scores import select_global, sorted_magnitudes


def allocate(problem: AllocationProblem, weights: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Zero the round(target * N) smallest |w| over all layers, within per-layer bounds.

    score(w) = |w|; k_l = number of layer l's weights among the globally smallest (see ``select_global`` for the
    bounds and the tie rule). Returns {name: k_l / n_l}.

    Args:
        problem: The allocation problem; its names are looked up in ``weights``.
        weights: Weight tensor of each layer, keyed by the problem's names (extra keys are ignored).
    """
    return problem.to_sparsities(select_global(sorted_magnitudes(weights, problem), problem))
