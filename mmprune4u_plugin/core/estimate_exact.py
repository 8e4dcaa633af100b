"""Exact distortion curves: prune one layer at a time and forward the calibration batches.

Memoised (see :mod:`memo`): what pruning layer l cannot change is served from the dense pass, and each pass stops
once the last tap is captured. The memo's dirty module is the layer's *runner* (the module whose forward uses the
weight, see :mod:`layers`): an attention's ``out_proj`` never runs as a module, so naming it would let every later
unit be served from the dense record. ``memoise=False`` gives the plain estimator for comparison: a forward for every
layer and level, up to the last tap (both stop there, so the comparison measures the memo alone and not the head's
post-processing, e.g. a detector's NMS, that no tap needs).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .layers import PrunableLayer, get_weight
from .local_lsi import magnitude_order
from .lsi import MomentAccumulator
from .memo import DEFAULT_MEMO_DEPTH, ForwardMemo
from .taps import Tap, TapRecorder, run_to_taps


class LeafCallCounter:
    """Counts forward calls of leaf modules (a model-independent measure of compute) while active."""

    def __init__(self, model: nn.Module) -> None:
        self.leaves = [m for m in model.modules() if not any(True for _ in m.children())]
        self.count = 0
        self._handles: list[Any] = []

    def __enter__(self) -> 'LeafCallCounter':
        def hook(module, args):
            self.count += 1
        self._handles = [m.register_forward_pre_hook(hook) for m in self.leaves]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()


def exact_curves(model: nn.Module, layers: Sequence[PrunableLayer], grid: Sequence[float], batches: Sequence[Any],
                 forward_fn: Callable[[nn.Module, Any], Any], *, task_taps: Sequence[Tap],
                 modality_taps: dict[str, Tap], memoise: bool = True, memo_depth: int = DEFAULT_MEMO_DEPTH,
                 progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, dict, dict]:
    """Measure task distortion D[l, k] and per-modality LSI bounds J[m][l, k] by real forward passes.

    D = mean over task taps t of sum_b ||f_t(pruned) - f_t(dense)||^2 / sum_b ||f_t(dense)||^2.

    Returns:
        (task [L, K], {modality: [L, K]}, stats) where stats counts leaf-module forwards: ``leaf_forwards`` (done),
        ``plain_leaf_forwards`` (the dense passes' count for every layer and level) and ``memo_calls_served``.
    """
    labels = {f'task{i}': tap for i, tap in enumerate(task_taps)}
    labels.update({f'mod:{m}': tap for m, tap in modality_taps.items()})
    task_labels = [lab for lab in labels if lab.startswith('task')]
    tap_modules = [tap.module for tap in labels.values()]
    L, K = len(layers), len(grid)
    task = np.zeros((L, K))
    per_mod = {m: np.zeros((L, K)) for m in modality_taps}
    memo = ForwardMemo(model, memo_depth) if memoise else None
    recorder = TapRecorder(model, labels, stop_early=True)
    with torch.no_grad():
        dense = []
        # the dense passes (one per batch, nothing served) are the unit of the plain estimator's cost
        with recorder, LeafCallCounter(model) as full:
            for i, batch in enumerate(batches):
                if memo is not None:
                    memo.start_batch(i)
                    with memo.record():
                        dense.append(run_to_taps(model, forward_fn, batch, recorder))
                else:
                    dense.append(run_to_taps(model, forward_fn, batch, recorder))
        energy = {lab: sum(float(sum(t.double().pow(2).sum() for t in d[lab])) for d in dense) for lab in task_labels}
        for lab, e in energy.items():
            if e <= 0:
                raise ValueError(f'task tap {labels[lab].module!r} ({labels[lab].io}) is all zeros on the '
                                 'calibration data: distortion cannot be normalised')
        counter = LeafCallCounter(model)
        with recorder, counter:
            for li, layer in enumerate(layers):
                weight = get_weight(model, layer)
                original = weight.detach().clone()
                order = magnitude_order(original)
                for k, s in enumerate(grid):
                    if s <= 0:
                        continue
                    weight.copy_(original)
                    weight.view(-1)[order[:int(round(float(s) * weight.numel()))]] = 0
                    num = dict.fromkeys(task_labels, 0.0)
                    accs = {m: MomentAccumulator() for m in modality_taps}
                    for i, batch in enumerate(batches):
                        if memo is not None:
                            memo.start_batch(i)
                            with memo.replay([layer.runner], tap_modules):
                                feats = run_to_taps(model, forward_fn, batch, recorder)
                        else:
                            feats = run_to_taps(model, forward_fn, batch, recorder)
                        for lab in task_labels:
                            num[lab] += float(sum((a.double() - b.double()).pow(2).sum()
                                                  for a, b in zip(feats[lab], dense[i][lab])))
                        for m, tap in modality_taps.items():
                            for a, b in zip(feats[f'mod:{m}'], dense[i][f'mod:{m}']):
                                accs[m].add(a, b, tap.channel_dim)
                    task[li, k] = np.mean([num[lab] / energy[lab] for lab in task_labels])
                    for m in modality_taps:
                        per_mod[m][li, k] = accs[m].kl_bound()
                    if progress is not None:
                        progress(1)
                weight.copy_(original)
    stats = {'leaf_forwards': counter.count,
             'plain_leaf_forwards': full.count * L * sum(1 for s in grid if s > 0),
             'memo_calls_served': memo.calls_served if memo is not None else 0}
    return task, per_mod, stats
