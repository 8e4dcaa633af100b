"""Shim: spconv 2.3.8's ``scatter_add_cpu`` gives wrong sums with more than one thread.

Upstream bug (spconv 2.3.8): ``SpconvOps.scatter_add_cpu`` is ``GatherCPU::scatter_add`` (spconv/csrc/sparse/
gather.py). It declares the row pointers ``buf`` and ``out_ptr`` outside the ``tv::kernel_1d`` lambda, which captures
them by reference, so the OpenMP threads share and overwrite each other's pointers: rows are added to the wrong
output rows. The CPU sparse conv (the Python gather-mm-scatter loop in ``spconv.pytorch.ops.indice_conv`` and
``indice_conv_backward``) calls it once per kernel offset, for the forward output and the input gradient.
``gather_cpu`` keeps its pointers local and is correct.

Reproduced: ``SubMConv3d(32, 32, 3)`` on 1217 random active voxels of a 2x16^3 grid in float64 vs a dense
``conv3d``: exact in 30/30 runs with ``torch.set_num_threads(1)``, wrong in 27/30 with 2 threads (timing-dependent;
spconv's OpenMP calls resolve to torch's libgomp, so torch's thread count is the one that matters, not
``OMP_NUM_THREADS``). Also: spconv reads index rows raw, so ``indices`` must be contiguous (``nonzero()`` is not).

Patch: ``spconv.pytorch.ops.SpconvOps`` (the name the CPU loop calls) becomes a proxy that forwards everything to
the real ``SpconvOps`` except ``scatter_add_cpu``, which is re-implemented with ``torch.Tensor.index_add_`` on
zero-copy views of the tensorview buffers. The function is CPU-only by name; the CUDA paths never call it.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

_MARK = '_mmprune4u_shim'


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class SpconvOpsProxy:
    """Stands in for ``SpconvOps`` inside ``spconv.pytorch.ops``; only ``scatter_add_cpu`` differs."""

    _mmprune4u_shim = True

    def __init__(self, ops: Any) -> None:
        self.__wrapped__ = ops

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__wrapped__, name)

    def scatter_add_cpu(self, out: Any, inp: Any, inds: Any) -> None:
        """``out[inds[i]] += inp[i]`` for ``i < len(inds)``, on tensorview CPU tensors, thread-safe."""
        from cumm import tensorview as tv

        nhot = inds.dim(0)
        if nhot == 0:
            return
        if out.dtype not in (tv.float32, tv.float64, tv.float16):
            with _one_torch_thread():  # dtype without a numpy view (spconv makes none from torch): 1 thread is exact
                self.__wrapped__.scatter_add_cpu(out, inp, inds)
            return
        out_t = torch.from_numpy(out.numpy_view())
        inp_t = torch.from_numpy(inp.numpy_view())[:nhot]
        index = torch.from_numpy(inds.numpy_view()).long()
        out_t.index_add_(0, index, inp_t)


def apply() -> bool:
    """Put the proxy in ``spconv.pytorch.ops`` (idempotent). Returns True."""
    from spconv.pytorch import ops

    if not getattr(ops.SpconvOps, _MARK, False):
        ops.SpconvOps = SpconvOpsProxy(ops.SpconvOps)
    return True
