"""mmengine 0.10.7 cannot load its own checkpoints under torch >= 2.6.

Upstream problem: torch 2.6 changed ``torch.load``'s default to ``weights_only=True``. mmengine 0.10.7's
``mmengine/runner/checkpoint.py`` calls ``torch.load(filename, map_location=...)`` without the argument, and its
checkpoints hold a ``message_hub`` with ``HistoryBuffer`` objects and numpy arrays, so ``--resume`` and ``load_from``
fail with ``UnpicklingError: Weights only load failed ... Unsupported global: mmengine...HistoryBuffer``
(reproduced with torch 2.13.0: train 2 iterations, then resume from ``iter_2.pth``).

Patch: inside that one module only, ``torch.load`` defaults to ``weights_only=False`` (the behaviour mmengine was
written for; checkpoints are files the user wrote). An explicit ``weights_only=`` is passed through. Not applied on
torch < 2.6.
"""
from __future__ import annotations

import functools
import types

import torch

NAME = 'mmengine_torch_load'


def _needs_patch() -> bool:
    major, minor = (int(x) for x in torch.__version__.split('.')[:2])
    return (major, minor) >= (2, 6)


class _TorchWithTrustedLoad(types.ModuleType):
    """Stands in for ``torch`` in mmengine's checkpoint module: everything is torch, except ``load``."""

    def __init__(self) -> None:
        super().__init__('torch')
        self.load = functools.partial(_load, torch.load)

    def __getattr__(self, name: str):
        return getattr(torch, name)


def _load(original, *args, **kwargs):
    kwargs.setdefault('weights_only', False)
    return original(*args, **kwargs)


def apply() -> bool:
    """Install the patch (idempotent); returns True when it is in effect."""
    if not _needs_patch():
        return False
    from mmengine.runner import checkpoint
    if not isinstance(checkpoint.torch, _TorchWithTrustedLoad):
        checkpoint.torch = _TorchWithTrustedLoad()
    return True
