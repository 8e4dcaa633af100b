"""Memoised forward passes for the exact distortion curves.

Pruning one layer changes only what lies downstream of it: a camera layer leaves the LiDAR branch untouched, and the
blocks of a backbone before the pruned layer see the same inputs as in the dense pass. :class:`ForwardMemo` records,
in the dense pass, each "unit" module's input fingerprint and output; in a later pass, a unit that does not contain the
pruned layer and whose inputs fingerprint equal to the dense pass returns (a copy of) its recorded output instead of
running. Units are the modules up to ``depth`` levels below the root, so the saving nests: a pruned ResNet stage
re-runs, while the stages before it are served from the record.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import math
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .layers import canonical_name

# units down to e.g. ``bbox_head.task_heads.0``: each task head reused on its own (3.7x vs 2.9x at 2 on BEVFusion-Lite,
# tools/benchmark_curves.py); a deeper record keeps more outputs in memory
DEFAULT_MEMO_DEPTH = 3


@functools.lru_cache(maxsize=64)
def _pattern(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A fixed quasi-random weighting, so a permutation of the values also changes the fingerprint."""
    return torch.cos(torch.arange(numel, dtype=torch.float64) * (math.sqrt(5) - 1) / 2).to(dtype)


def fingerprint(obj: Any) -> tuple:
    """A cheap content summary of every tensor inside ``obj``: shape, dtype, sum and a weighted sum (two passes)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().reshape(-1)
        if not t.is_floating_point():
            t = t.to(torch.float64)
        t = t.contiguous()
        return (tuple(obj.shape), str(obj.dtype), float(t.sum()), float(torch.dot(t, _pattern(t.numel(), t.dtype))))
    if hasattr(obj, 'features') and hasattr(obj, 'indices') and isinstance(obj.features, torch.Tensor):
        return ('sparse', fingerprint(obj.features), fingerprint(obj.indices))
    if isinstance(obj, (list, tuple)):
        return tuple(fingerprint(x) for x in obj)
    if isinstance(obj, dict):
        return tuple((k, fingerprint(v)) for k, v in obj.items())
    return ()  # metadata objects (data samples, None, numbers) are taken as unchanged


def _detach_copy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if hasattr(obj, 'replace_feature') and isinstance(getattr(obj, 'features', None), torch.Tensor):
        return obj.replace_feature(obj.features.detach().clone())
    if hasattr(obj, 'indices') and isinstance(getattr(obj, 'features', None), torch.Tensor):
        # mmcv's SparseConvTensor has no replace_feature, and its users assign ``.features`` in place (Cylinder3D
        # does, after the call): a shared object would let a caller rewrite the record
        copied = copy.copy(obj)
        copied.features = obj.features.detach().clone()
        return copied
    if isinstance(obj, tuple) and hasattr(obj, '_fields'):
        return type(obj)(*(_detach_copy(x) for x in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detach_copy(x) for x in obj)
    if isinstance(obj, dict):
        return type(obj)((k, _detach_copy(v)) for k, v in obj.items())
    return obj


class ForwardMemo:
    """Record unit outputs in a dense pass; replay them in passes where only ``dirty`` modules changed.

    Args:
        model: The model (its unit modules' ``forward`` are wrapped only inside :meth:`record` / :meth:`replay`).
        depth: Units are modules whose canonical name has at most this many dotted parts.
    """

    def __init__(self, model: nn.Module, depth: int = DEFAULT_MEMO_DEPTH) -> None:
        if depth < 1:
            raise ValueError(f'`depth` must be >= 1, but got depth: {depth}')
        self._all_modules = {canonical_name(n): m for n, m in model.named_modules()}
        self.units = {n: m for n, m in self._all_modules.items() if n and len(n.split('.')) <= depth}
        # (batch, unit, call) -> (input fingerprint, output, unit call counters after the call)
        self._record: dict[tuple[int, str, int], tuple[tuple, Any, dict[str, int]]] = {}
        self._batch = 0
        self._counters: dict[str, int] = {}
        self.calls_served = 0
        self.calls_run = 0
        self._dirty_ran = False

    def start_batch(self, index: int) -> None:
        """Tell the memo which calibration batch the next forward pass processes."""
        self._batch = index
        self._counters = {name: 0 for name in self.units}
        self._dirty_ran = False

    @contextlib.contextmanager
    def record(self) -> Iterator['ForwardMemo']:
        """Dense pass: run every unit and remember its input fingerprint and output."""
        with self._wrapped(self._record_call):
            yield self

    @contextlib.contextmanager
    def replay(self, dirty: Sequence[str], taps: Sequence[str] = ()) -> Iterator['ForwardMemo']:
        """Pass in which only the modules named in ``dirty`` (and what they feed) may differ from the record.

        Units that hold a tap module below them always run, so the tap's hook fires. Until a dirty module first
        runs, the pass is identical to the dense one, so units are served without comparing fingerprints.
        """
        dirty = [canonical_name(d) for d in dirty]
        inner_taps = [canonical_name(t) for t in taps]

        def call(name: str, forward, args, kwargs):
            key = (self._batch, name, self._counters[name])
            rec = self._record.get(key)
            contains_dirty = (any(d == name or d.startswith(name + '.') for d in dirty)
                              or any(t.startswith(name + '.') for t in inner_taps))
            if rec is not None and not contains_dirty and (
                    not self._dirty_ran or fingerprint((args, kwargs)) == rec[0]):
                self._counters.update(rec[2])
                self.calls_served += 1
                return _detach_copy(rec[1])
            self._counters[name] += 1
            self.calls_run += 1
            return forward(*args, **kwargs)

        def mark(module, args):
            self._dirty_ran = True
        handles = [m.register_forward_pre_hook(mark) for n, m in self._all_modules.items() if n in dirty]
        try:
            with self._wrapped(call):
                yield self
        finally:
            for h in handles:
                h.remove()

    def _record_call(self, name: str, forward, args, kwargs):
        key = (self._batch, name, self._counters[name])
        self._counters[name] += 1
        fp = fingerprint((args, kwargs))
        out = forward(*args, **kwargs)
        self._record[key] = (fp, _detach_copy(out), dict(self._counters))
        return out

    @contextlib.contextmanager
    def _wrapped(self, call) -> Iterator[None]:
        originals = {}
        for name, module in self.units.items():
            originals[name] = module.__dict__.get('forward')
            bound = module.forward

            def wrapper(*args, _name=name, _fwd=bound, **kwargs):
                return call(_name, _fwd, args, kwargs)
            module.forward = wrapper
        try:
            yield
        finally:
            for name, module in self.units.items():
                if originals[name] is None:
                    del module.forward
                else:
                    module.forward = originals[name]
