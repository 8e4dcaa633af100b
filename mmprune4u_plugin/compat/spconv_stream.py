"""Shim: spconv 2.3.8 asks CUDA for a stream in the CPU sparse-conv backward.

Upstream bug (spconv 2.3.8, the CPU-only ``spconv`` wheel on PyPI): ``spconv.pytorch.ops.indice_conv_backward``
runs ``stream = get_current_stream()`` (ops.py line 1200) before it branches on ``features.is_cuda``, and
``spconv.pytorch.cppcore.get_current_stream`` is ``torch.cuda.current_stream().cuda_stream``. On a CPU torch that
raises ``AssertionError: Torch not compiled with CUDA enabled``. The forward and the other CPU paths guard the call
(``stream = 0`` on CPU); the CPU backward never uses the stream (it is only handed to the CUDA GEMM tuner).

Reproduced: a ``SubMConv3d`` or ``SparseConv3d`` on CPU features with ``requires_grad=True``, then ``.backward()``.

Patch: every ``get_current_stream`` name bound in a loaded ``spconv.*`` module (``cppcore`` defines it; ``ops``,
``hash``, ``utils`` import it) is replaced by a function that returns the null stream 0 when CUDA is not available
and calls the original otherwise. Without CUDA no CUDA tensor can exist, so only CPU paths see the stub; with CUDA the
original runs unchanged, so CUDA paths are untouched.
"""
from __future__ import annotations

import sys
from typing import Callable

import torch

_MARK = '_mmprune4u_shim'


def make_stream_shim(original: Callable[[], int]) -> Callable[[], int]:
    """Wrap spconv's ``get_current_stream``: 0 without CUDA, else ``original()``."""

    def get_current_stream() -> int:
        if not torch.cuda.is_available():
            return 0
        return original()

    get_current_stream.__wrapped__ = original
    setattr(get_current_stream, _MARK, True)
    return get_current_stream


def apply() -> bool:
    """Install the shim in every loaded spconv module (idempotent). Returns True."""
    import spconv.pytorch  # noqa: F401  (loads ops, cppcore, hash, utils)
    from spconv.pytorch import cppcore

    current = cppcore.get_current_stream
    shim = current if getattr(current, _MARK, False) else make_stream_shim(current)
    original = shim.__wrapped__
    for name, module in list(sys.modules.items()):
        if name == 'spconv' or name.startswith('spconv.'):
            if getattr(module, '__dict__', {}).get('get_current_stream') is original:
                module.get_current_stream = shim
    return True
