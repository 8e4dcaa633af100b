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
- spconv: the module itself says which input site feeds output site n through kernel offset o: one call with
  feature 0 = input index + 1 (float64 on CPU, exact) and a weight that copies feature 0 at offset o to output
  channel o yields the (rows, offsets) neighbour table, whatever the kind (submanifold, strided, transposed, inverse)
  and however spconv stores its index pairs. Other dtypes (CUDA) send the index in base-256 digits, one call each.
- Attention out_proj: the attention's output with ``out_proj`` set to the identity and no bias (the joined heads).

The caller checks the reconstruction P W^T + b == y on the first chunk before trusting a map; a generator that
finds no patches raises :class:`NotAffine`.
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
from .taps import tensors_in

CHUNK_ELEMENTS = 1 << 22  # patch values materialised at once (16 MiB in float32)
Chunks = Iterator[tuple[torch.Tensor, torch.Tensor]]


class NotAffine(Exception):
    """Raised by a chunk generator when the runner's output turns out not to be affine in the patches."""


@dataclass(frozen=True)
class PatchMap:
    """Where each entry of the patch-order weight (groups, C / groups, J) sits in the layer's weight (flat index),
    the bias (C,) or None, the chunk generator and, for stride-1 single-group convs, a function that gives the
    patches' Gram matrix, sums and row count without forming them (conv_gram.py)."""

    index: torch.Tensor
    bias: torch.Tensor | None
    chunks: Callable[[tuple, dict, Any], Chunks]
    gram: Callable[[tuple, dict, Any], tuple[torch.Tensor, torch.Tensor, int, torch.dtype]] | None = None

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
        return PatchMap(_flat(shape).view(1, shape[0], -1), bias, partial(_sparse_chunks, runner),
                        partial(_sparse_gram, runner))
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
        for n, o, k, d, p in reversed(list(zip(up.shape[2:], output.shape[2:], conv.kernel_size, conv.dilation,
                                                conv.padding))):
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
    return gram[None], total[None], rows, torch.float64 if x.dtype == torch.float64 else torch.float32


def with_reused_pairs(runner: nn.Module, args: tuple, output: Any) -> tuple:
    """For a spconv submanifold conv whose dense call built its index pairs (its ``indice_key`` is new), an input
    that carries them, so later calls (the neighbour probe, the calls per level) reuse them, not rebuild them."""
    key = getattr(runner, 'indice_key', None)
    if not (is_sparse_conv(runner) and getattr(runner, 'subm', False) and key and args):
        return args
    x, built = args[0], getattr(output, 'indice_dict', {})
    if key in x.indice_dict or key not in built:
        return args
    x = x.shadow_copy()
    x.indice_dict = dict(built)
    return (x, *args[1:])


def _sparse_chunks(conv: nn.Module, args: tuple, kwargs: dict, output: Any) -> Chunks:
    x, out = with_reused_pairs(conv, args, output)[0], output.features
    table = neighbour_table(conv, x, out.shape[0])
    if table is None:
        raise NotAffine(f'{type(conv).__name__}: the neighbour probe gave no integer index table')
    feats = torch.cat([x.features, x.features.new_zeros(1, x.features.shape[1])])
    step = max(1, CHUNK_ELEMENTS // table.shape[1] // feats.shape[1])
    for r in range(0, out.shape[0], step):
        yield feats[table[r:r + step]].reshape(1, -1, table.shape[1] * feats.shape[1]), out[r:r + step]


def _sparse_gram(conv: nn.Module, args: tuple, kwargs: dict, output: Any):
    """Gram matrix of the sparse patches without their zeros: block (o, o') sums over the output sites that have
    an input neighbour at both offsets only (LiDAR sites have few of their 27 neighbours)."""
    x, out = with_reused_pairs(conv, args, output)[0], output.features
    table = neighbour_table(conv, x, out.shape[0])
    if table is None:
        raise NotAffine(f'{type(conv).__name__}: the neighbour probe gave no integer index table')
    feats, (kv, channels) = x.features.detach(), (table.shape[1], x.features.shape[1])
    present = table < feats.shape[0]
    gram = torch.zeros(kv, channels, kv, channels, dtype=torch.float64)
    total = torch.zeros(kv, channels, dtype=torch.float64)
    for o in range(kv):
        rows = present[:, o].nonzero()[:, 0]
        if rows.numel() == 0:
            continue
        a = feats[table[rows, o]]
        total[o] = a.sum(0, dtype=torch.float64)
        both = present[rows, o:]
        for o2 in range(o, kv):
            sel = both[:, o2 - o].nonzero()[:, 0]
            if sel.numel():
                block = (a[sel].T @ feats[table[rows[sel], o2]]).double()
                gram[o, :, o2] = block
                gram[o2, :, o] = block.T
    dtype = torch.float64 if feats.dtype == torch.float64 else torch.float32
    return gram.reshape(1, kv * channels, -1), total.reshape(1, -1), out.shape[0], dtype


def neighbour_table(conv: nn.Module, x: Any, n_out: int) -> torch.Tensor | None:
    """(n_out, kernel volume) index of the input site that feeds each output site through each kernel offset (the
    number of input sites where there is none), read from ``conv`` itself (module docstring); None if the probe
    does not give one integer per entry."""
    n_in, device = x.features.shape[0], x.features.device
    dtype = torch.float64 if device.type == 'cpu' else x.features.dtype
    base = 2 ** 52 if dtype == torch.float64 else 256
    kv = math.prod(conv.kernel_size)
    weight = torch.zeros(kv, kv, conv.in_channels, dtype=dtype, device=device)
    weight[torch.arange(kv), torch.arange(kv), 0] = 1
    params = {'weight': weight.view(kv, *conv.kernel_size, conv.in_channels)}
    if getattr(conv, 'bias', None) is not None:
        params['bias'] = torch.zeros(kv, dtype=dtype, device=device)
    index = torch.arange(n_in, device=device)
    table = torch.zeros(n_out, kv, dtype=torch.long, device=device)
    feats = torch.zeros(n_in, conv.in_channels, dtype=dtype, device=device)
    scale = 1
    while True:
        feats[:, 0] = (index // scale % base + 1).to(dtype)
        digit = functional_call(conv, params, (x.replace_feature(feats),)).features
        if digit.shape != (n_out, kv) or not torch.equal(digit, digit.round()) or digit.min() < 0 or digit.max() > base:
            return None
        present = digit > 0
        table += (digit.long() - 1).clamp_min(0) * scale
        scale *= base
        if scale >= n_in:
            return torch.where(present, table, torch.full_like(table, n_in))
