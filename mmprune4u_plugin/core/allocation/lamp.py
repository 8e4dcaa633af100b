"""LAMP allocation (Lee, Park, Mo, Ahn and Shin, "Layer-adaptive sparsity for the magnitude-based pruning", ICLR 2021).

LAMP rescales magnitudes so that one global threshold makes sense across layers: a weight's score is its squared
magnitude relative to the energy of the weights at least as large as it in the same layer. The score rises with |w|
inside a layer, so per-layer magnitude pruning with the resulting counts drops exactly the lowest-score weights.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from .base import AllocationProblem
from .scores import select_global, sorted_magnitudes


def lamp_scores(sorted_magnitude: np.ndarray) -> np.ndarray:
    """LAMP scores of one layer's weights, given |w| sorted ascending (scores come out ascending too).

    score(u) = w[u]^2 / sum_{v >= u} w[v]^2, with score 0 where the tail energy is 0 (all remaining weights zero).
    """
    sq = np.square(sorted_magnitude, dtype=np.float64)
    tail = np.cumsum(sq[::-1])[::-1]
    return np.divide(sq, tail, out=np.zeros_like(sq), where=tail > 0)


def allocate(problem: AllocationProblem, weights: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """One global threshold on the LAMP score, within per-layer bounds; exact global target.

    k_l = number of layer l's weights among the round(target * N) smallest LAMP scores over all layers (bounds and
    ties as in ``select_global``). Returns {name: k_l / n_l}.

    Args:
        problem: The allocation problem; its names are looked up in ``weights``.
        weights: Weight tensor of each layer, keyed by the problem's names (extra keys are ignored).
    """
    scores = [lamp_scores(m) for m in sorted_magnitudes(weights, problem)]
    return problem.to_sparsities(select_global(scores, problem))
