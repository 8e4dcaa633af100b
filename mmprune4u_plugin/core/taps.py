"""Feature taps: capture a module's input or output during a forward pass, and stop the pass once all are in."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .layers import module_by_name


class StopForward(Exception):
    """Raised from a hook once every tap has been captured: the rest of the network need not run."""


@dataclass(frozen=True)
class Tap:
    """Where to read a feature.

    Attributes:
        module: Canonical module name (e.g. ``bbox_head``, ``pts_neck``).
        io: ``input`` (first positional argument) or ``output`` of that module.
        channel_dim: Channel dimension of the captured tensors (negative counts from the end).
    """

    module: str
    io: str = 'output'
    channel_dim: int = 1

    def __post_init__(self) -> None:
        if self.io not in ('input', 'output'):
            raise ValueError(f'`io` of tap {self.module!r} must be "input" or "output", but got io: {self.io!r}')


def tensors_in(obj: Any) -> list[torch.Tensor]:
    """Floating tensors inside nested lists / tuples / dicts and spconv SparseConvTensors, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() else []
    if hasattr(obj, 'features') and hasattr(obj, 'indices') and isinstance(obj.features, torch.Tensor):
        return [obj.features]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in tensors_in(item)]
    if isinstance(obj, dict):
        return [t for key in obj for t in tensors_in(obj[key])]
    return []


class TapRecorder:
    """Registers hooks on the tap modules; :meth:`captured` gives the tensors of the last pass per tap.

    Args:
        model: The model.
        taps: Taps to capture, keyed by a label (e.g. ``task``, ``camera``).
        stop_early: Raise :class:`StopForward` as soon as every tap has been captured.
    """

    def __init__(self, model: nn.Module, taps: dict[str, Tap], *, stop_early: bool = True) -> None:
        if not taps:
            raise ValueError('TapRecorder needs at least one tap')
        self.taps = dict(taps)
        self.stop_early = stop_early
        self._modules = {label: module_by_name(model, tap.module) for label, tap in self.taps.items()}
        self._captured: dict[str, list[torch.Tensor]] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> 'TapRecorder':
        for label, tap in self.taps.items():
            module = self._modules[label]
            if tap.io == 'input':
                self._handles.append(module.register_forward_pre_hook(self._pre_hook(label)))
            else:
                self._handles.append(module.register_forward_hook(self._post_hook(label)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def reset(self) -> None:
        self._captured = {}

    def captured(self) -> dict[str, list[torch.Tensor]]:
        missing = sorted(set(self.taps) - set(self._captured))
        if missing:
            raise RuntimeError(f'taps {missing} were not reached by the forward pass '
                               f'(modules {[self.taps[m].module for m in missing]})')
        return self._captured

    def _store(self, label: str, obj: Any) -> None:
        if label in self._captured:  # a module called several times: keep every call's tensors
            self._captured[label] = self._captured[label] + tensors_in(obj)
        else:
            self._captured[label] = tensors_in(obj)
        if self.stop_early and len(self._captured) == len(self.taps):
            raise StopForward

    def _pre_hook(self, label: str):
        def hook(module: nn.Module, args: tuple) -> None:
            self._store(label, args[0] if args else None)
        return hook

    def _post_hook(self, label: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            self._store(label, output)
        return hook


def run_to_taps(model: nn.Module, forward_fn, batch: Any, recorder: TapRecorder) -> dict[str, list[torch.Tensor]]:
    """Run ``forward_fn(model, batch)`` until every tap is captured and return the captured tensors."""
    recorder.reset()
    try:
        forward_fn(model, batch)
    except StopForward:
        pass
    return recorder.captured()

