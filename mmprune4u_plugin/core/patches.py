"""Layers whose output is an affine map of input patches, and those patches (for the layer-local regulariser).

For Linear, Conv1d/2d/3d and ConvTranspose1d/2d/3d (any stride, padding, padding mode, dilation, groups, output
size), spconv sparse convolutions and the output projection of ``nn.MultiheadAttention``, the runner's output is,
for each group g of output channels,

    y[n, c] = sum_j W_g[c, j] * P_g[n, j] + b[c]        (n: output position, j: input channel x kernel offset)

with W_g the weight in patch order (groups, C / groups, J). :func:`patch_map` says whether a layer is of that kind
and returns where each W_g entry sits in the weight, b and a function that turns one call of the runner (args,
kwargs, output) into chunks (P: (groups, rows, J), y: (rows, C)) with matching rows. How P is found:

- Linear: the input, flattened to rows.
- Conv: the input padded as the module pads it (``_reversed_padding_repeated_twice``, padding mode), unfolded over
  each spatial dim with the stride, keeping every ``dilation``-th element of each window. ConvTranspose: the same
  on the input spread out by the stride (zeros between), padded to the output's size, with the kernel flipped.
- spconv: rows of input features gathered through a neighbour table read from the module itself
  (sparse_patches.py).
- Attention out_proj: the attention's output with ``out_proj`` set to the identity and no bias (the joined heads).

The caller checks the reconstruction P W^T + b == y on the first chunk before trusting a map; a generator that
finds no patches raises :class:`sparse_patches.NotAffine`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .conv_gram import conv_gram
from .layers import PrunableLayer, is_sparse_conv
from .sparse_patches import sparse_chunks, sparse_gram
from .taps import tensors_in

CHUNK_ELEMENTS = 1 << 22  # patch values materialised at once (16 MiB in float32)
Chunks = Iterator[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class PatchMap:
    """Where each entry of the patch-order weight (groups, C / groups, J) sits in the layer's weight (flat index),
    the bias (C,) or None, the chunk generator and, for stride-1 single-group convs, a function that gives the
    patches' Gram matrix, sums and row count without forming them (conv_gram.py)."""

    index: torch.Tensor
    bias: torch.Tensor | None
    chunks: Callable[[tuple, dict, Any], Chunks]
    gram: Callable[[tuple, dict, Any], tuple[torch.Tensor, torch.Tensor, int]] | None = None

    def weight(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight`` (the layer's, any layout) in patch order."""
        return weight.detach().reshape(-1)[self.index]


def patch_map(runner: nn.Module, layer: PrunableLayer) -> PatchMap | None:
    """The patch form of ``layer`` run by ``runner``, or None when its output is not (known to be) affine in it."""
    if isinstance(runner, nn.MultiheadAttention):
        if layer.runner_param != 'out_proj.weight':
            return None
        proj = runner.out_proj
        return PatchMap(_flat(proj.weight.shape).view(1, *proj.weight.shape), _detached(proj.bias),
                        partial(_attention_chunks, runner))
    if layer.runner_param != 'weight':
        return None
    shape, bias = tuple(runner.weight.shape), _detached(getattr(runner, 'bias', None))
    if isinstance(runner, nn.Linear):
        return PatchMap(_flat(shape)[None], bias, _linear_chunks)
    lag_gram = partial(_conv_gram, runner) if getattr(runner, 'groups', 0) == 1 else None
    if isinstance(runner, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return PatchMap(_flat(shape).reshape(runner.groups, shape[0] // runner.groups, -1), bias,
                        partial(_conv_chunks, runner), lag_gram if set(runner.stride) == {1} else None)
    if isinstance(runner, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        # weight (Cin, Cout / G, k..): output channel c, input channel i, flipped kernel offset (see _conv_chunks)
        g, nd = runner.groups, len(runner.kernel_size)
        index = _flat(shape).view(g, shape[0] // g, *shape[1:]).flip(list(range(3, 3 + nd))).transpose(1, 2)
        return PatchMap(index.reshape(g, shape[1], -1), bias, partial(_conv_chunks, runner), lag_gram)
    if is_sparse_conv(runner) and shape == (runner.out_channels, *runner.kernel_size, runner.in_channels):  # KRSC
        return PatchMap(_flat(shape).view(1, shape[0], -1), bias, partial(sparse_chunks, runner),
                        partial(sparse_gram, runner))
    return None


def _flat(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.arange(math.prod(shape)).view(shape)


def _detached(bias: torch.Tensor | None) -> torch.Tensor | None:
    return None if bias is None else bias.detach()


def _input(args: tuple, kwargs: dict) -> Any:
    return args[0] if args else kwargs['input']


def _row_chunks(patches: torch.Tensor, out: torch.Tensor) -> Chunks:
    step = max(1, CHUNK_ELEMENTS // (patches.shape[0] * patches.shape[2]))
    for r in range(0, out.shape[0], step):
        yield patches[:, r:r + step], out[r:r + step]


def _linear_chunks(args: tuple, kwargs: dict, output: torch.Tensor) -> Chunks:
    x = _input(args, kwargs)
    yield from _row_chunks(x.reshape(1, -1, x.shape[-1]), output.reshape(-1, output.shape[-1]))


def _attention_chunks(attn: nn.MultiheadAttention, args: tuple, kwargs: dict, output: Any) -> Chunks:
    proj = attn.out_proj
    params = {'out_proj.weight': torch.eye(proj.weight.shape[1], dtype=proj.weight.dtype, device=proj.weight.device)}
    if proj.bias is not None:
        params['out_proj.bias'] = torch.zeros_like(proj.bias)
    joined = tensors_in(functional_call(attn, params, args, kwargs))[0]
    out = tensors_in(output)[0]
    yield from _row_chunks(joined.reshape(1, -1, joined.shape[-1]), out.reshape(-1, out.shape[-1]))


def _conv_input(conv: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor):
    """(x, stride, output): the input as a 'valid' conv with ``stride`` sees it (padded; for a transposed conv
    spread out and padded), both batched."""
    x, nd = _input(args, kwargs), len(conv.kernel_size)
    if x.dim() == nd + 1:  # unbatched input
        x, output = x[None], output[None]
    if getattr(conv, 'transposed', False):
        # a transposed conv is a stride-1 conv of the input with stride - 1 zeros between elements, padded to give
        # the output's size, with the kernel flipped (the flip is in patch_map's index)
        up = x.new_zeros(*x.shape[:2], *[(n - 1) * s + 1 for n, s in zip(x.shape[2:], conv.stride)])
        up[(..., *[slice(None, None, s) for s in conv.stride])] = x
        pad = []
        dims = zip(up.shape[2:], output.shape[2:], conv.kernel_size, conv.dilation, conv.padding)
        for n, o, k, d, p in reversed(list(dims)):
            left = d * (k - 1) - p
            pad += [left, o + d * (k - 1) - n - left]
        return F.pad(up, pad), (1,) * nd, output
    pad = conv._reversed_padding_repeated_twice
    if conv.padding_mode != 'zeros':
        return F.pad(x, pad, mode=conv.padding_mode), conv.stride, output
    return (F.pad(x, pad) if any(pad) else x), conv.stride, output


def _conv_chunks(conv: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> Chunks:
    x, stride, output = _conv_input(conv, args, kwargs, output)
    nd = len(conv.kernel_size)
    for i, (k, s, d) in enumerate(zip(conv.kernel_size, stride, conv.dilation)):
        x = x.unfold(2 + i, d * (k - 1) + 1, s)[..., ::d]  # window dims are appended last: (B, Cin, o.., k..)
    x = x.unflatten(1, (conv.groups, -1))  # (B, G, Cin/G, o1..od, k1..kd)
    outs, inner = x.shape[3:3 + nd], math.prod(x.shape[4:3 + nd])
    order = (0, *range(2, 2 + nd), 1, *range(2 + nd, 2 + 2 * nd))  # (G, o1..od, Cin/G, k1..kd)
    per_row = math.prod(x.shape[1:3]) * math.prod(x.shape[3 + nd:])
    rows = max(1, CHUNK_ELEMENTS // (per_row * inner))
    for b in range(x.shape[0]):
        for h in range(0, outs[0], rows):
            part = x[b, :, :, h:h + rows].permute(order)
            yield (part.reshape(part.shape[0], -1, per_row // part.shape[0]),
                   output[b, :, h:h + rows].reshape(output.shape[1], -1).T)


def _conv_gram(conv: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor):
    x, stride, _ = _conv_input(conv, args, kwargs, output)
    gram, total, rows = conv_gram(x, conv.kernel_size, conv.dilation)
    return gram[None], total[None], rows
