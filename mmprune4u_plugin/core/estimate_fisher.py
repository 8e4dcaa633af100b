"""Gradient-based (Gauss-Newton) distortion curves: every layer and level from a few backward passes.

At the dense point the first-order term of a squared distortion vanishes, so the useful quantity is
||J dW||^2 = dW^T J^T J dW, with J the Jacobian of the task features f w.r.t. the weights. With random probes v at the
tap (Rademacher, E[v v^T] = I), one backward of v.f gives g_v = J^T v for every layer at once, and

    E_v[(g_v . dW_{l,k})^2] = dW_{l,k}^T J^T J dW_{l,k} = ||J dW_{l,k}||^2.

dW_{l,k} zeros the round(s_k n_l) smallest-magnitude weights, so g_v . dW_{l,k} = -cumsum((g_v * W)[order])[m_k - 1]:
all levels of a layer cost one cumulative sum. D is normalised like the exact estimator (by sum_b ||f_b||^2).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .layers import PrunableLayer, get_weight
from .local_lsi import magnitude_order
from .taps import Tap, TapRecorder, run_to_taps


def fisher_curves(model: nn.Module, layers: Sequence[PrunableLayer], grid: Sequence[float], batches: Sequence[Any],
                  forward_fn: Callable[[nn.Module, Any], Any], *, task_taps: Sequence[Tap], num_probes: int = 8,
                  seed: int = 0, progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, dict]:
    """[L, K] Gauss-Newton estimate of the task distortion; ``num_probes`` backward passes per batch."""
    if num_probes < 1:
        raise ValueError(f'`num_probes` must be >= 1, but got num_probes: {num_probes}')
    labels = {f'task{i}': tap for i, tap in enumerate(task_taps)}
    weights = [get_weight(model, layer) for layer in layers]
    orders = [magnitude_order(w) for w in weights]
    counts = [torch.tensor([int(round(float(s) * w.numel())) for s in grid]) for w in weights]
    acc = {lab: np.zeros((len(layers), len(grid))) for lab in labels}
    energy = dict.fromkeys(labels, 0.0)
    gen = torch.Generator().manual_seed(seed)
    recorder = TapRecorder(model, labels, stop_early=True)
    backwards = 0
    with recorder, torch.enable_grad():
        for batch in batches:
            feats = run_to_taps(model, forward_fn, batch, recorder)
            for lab in labels:
                energy[lab] += float(sum(f.detach().double().pow(2).sum() for f in feats[lab]))
                for p in range(num_probes):
                    probes = [torch.randint(0, 2, f.shape, generator=gen).to(f) * 2 - 1 for f in feats[lab]]
                    scalar = sum((v * f).sum() for v, f in zip(probes, feats[lab]))
                    grads = torch.autograd.grad(scalar, weights, retain_graph=True, allow_unused=True)
                    backwards += 1
                    for li, (g, w) in enumerate(zip(grads, weights)):
                        if g is None:  # the layer does not reach this tap
                            continue
                        prod = (g.detach() * w.detach()).reshape(-1)[orders[li]].double()
                        cum = torch.cat([prod.new_zeros(1), torch.cumsum(prod, 0)])
                        acc[lab][li] += (cum[counts[li]] ** 2).numpy() / num_probes
            if progress is not None:
                progress(1)
    for lab, e in energy.items():
        if e <= 0:
            raise ValueError(f'task tap {labels[lab].module!r} is all zeros on the calibration data')
    task = np.mean([acc[lab] / energy[lab] for lab in labels], axis=0)
    return task, {'backward_passes': backwards}
