"""Layer-local regulariser R_l(s): LSI bound on KL between a layer's own output channels, pruned vs dense.

Pruning only layer l leaves its input unchanged, so R_l(s_k) needs no extra network pass: one dense pass where each
layer, on its real input, is also evaluated with its weights pruned to every level (``torch.func.functional_call``),
and the per-channel moments of pruned vs dense outputs are pooled over the calibration batches.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .layers import PrunableLayer, module_by_name
from .lsi import MomentAccumulator
from .taps import tensors_in


def magnitude_order(weight: torch.Tensor) -> torch.Tensor:
    """Flat indices of ``weight`` from smallest to largest magnitude (stable, so ties go by index)."""
    return torch.sort(weight.detach().abs().reshape(-1), stable=True).indices


def pruned_copy(weight: torch.Tensor, order: torch.Tensor, sparsity: float) -> torch.Tensor:
    """``weight`` with its round(sparsity * n) smallest-magnitude entries zeroed (same rule as ``magnitude_mask``)."""
    out = weight.detach().clone()
    m = int(round(float(sparsity) * weight.numel()))
    out.view(-1)[order[:m]] = 0
    return out


def local_lsi_curves(model: nn.Module, layers: Sequence[PrunableLayer], grid: Sequence[float],
                     batches: Sequence[Any], forward_fn: Callable[[nn.Module, Any], Any],
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
    """[L, K] array: channel-mean LSI-KL bound of each layer's output at each grid level (column 0 is 0)."""
    accs = [[MomentAccumulator() for _ in grid] for _ in layers]
    handles = []
    busy = [False]
    for li, layer in enumerate(layers):
        module = module_by_name(model, layer.module_name)
        weight = getattr(module, layer.param_name)
        order = magnitude_order(weight)

        def hook(mod, args, kwargs, output, _li=li, _layer=layer, _w=weight, _order=order):
            if busy[0]:
                return
            busy[0] = True
            try:
                dense = tensors_in(output)[0]
                for k, s in enumerate(grid):
                    if s <= 0:
                        continue
                    params = {_layer.param_name: pruned_copy(_w, _order, s)}
                    pruned = tensors_in(functional_call(mod, params, args, kwargs))[0]
                    accs[_li][k].add(pruned, dense, _layer.channel_dim)
            finally:
                busy[0] = False
        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            for batch in batches:
                forward_fn(model, batch)
                if progress is not None:
                    progress(1)
    finally:
        for h in handles:
            h.remove()
    return np.array([[acc.kl_bound() for acc in row] for row in accs], dtype=np.float64)
