"""spconv sparse convolutions as gathers of input features: the neighbour table, patch chunks, the Gram matrix.

Which input site feeds output site n through kernel offset o is read from the module itself: one call with feature 0
= input index + 1 (float64 on CPU, exact) and a weight that copies feature 0 at offset o to output channel o yields
the (rows, offsets) neighbour table, whatever the kind (submanifold, strided, transposed, inverse) and however
spconv stores its index pairs. Other dtypes (CUDA) send the index in base-256 digits, one call each. Patch row n is
then the input features at its neighbours (zeros where there is none), in the weight's (offset, C_in) order (KRSC).
"""
from __future__ import annotations

import math
from typing import Any, Iterator

import torch
from torch import nn
from torch.func import functional_call

from .layers import is_sparse_conv

CHUNK_ELEMENTS = 1 << 22  # patch values materialised at once


class NotAffine(Exception):
    """Raised by a chunk generator when the runner's output turns out not to be affine in the patches."""


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


def sparse_chunks(conv: nn.Module, args: tuple, kwargs: dict,
                  output: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    x, out = with_reused_pairs(conv, args, output)[0], output.features
    table = neighbour_table(conv, x, out.shape[0])
    if table is None:
        raise NotAffine(f'{type(conv).__name__}: the neighbour probe gave no integer index table')
    feats = torch.cat([x.features, x.features.new_zeros(1, x.features.shape[1])])
    step = max(1, CHUNK_ELEMENTS // table.shape[1] // feats.shape[1])
    for r in range(0, out.shape[0], step):
        yield feats[table[r:r + step]].reshape(1, -1, table.shape[1] * feats.shape[1]), out[r:r + step]


def sparse_gram(conv: nn.Module, args: tuple, kwargs: dict, output: Any):
    """(M, m, rows) of the patches, M without the zeros: block (o, o') sums over the output sites that have
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
    return gram.reshape(1, kv * channels, -1), total.reshape(1, -1), out.shape[0]


def neighbour_table(conv: nn.Module, x: Any, n_out: int) -> torch.Tensor | None:
    """(n_out, kernel volume) index of the input site that feeds each output site through each kernel offset (the
    number of input sites where there is none), read from ``conv`` itself (module docstring); None if the probe
    does not give one integer per entry."""
    n_in, device = x.features.shape[0], x.features.device
    kv = math.prod(conv.kernel_size)
    if kv == 1 and getattr(conv, 'subm', False) and n_out == n_in:
        # a 1x1x1 submanifold conv maps each site to itself (and spconv's 1x1 path reshapes the weight with the
        # module's own channel counts, so the probe below cannot run on it)
        return torch.arange(n_in, device=device)[:, None]
    dtype = torch.float64 if device.type == 'cpu' else x.features.dtype
    base = 2 ** 52 if dtype == torch.float64 else 256
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
        try:
            digit = functional_call(conv, params, (x.replace_feature(feats),)).features
        except RuntimeError:  # a conv kind whose forward does not take a probe weight (the caller falls back)
            return None
        if digit.shape != (n_out, kv) or not torch.equal(digit, digit.round()) or digit.min() < 0 or digit.max() > base:
            return None
        present = digit > 0
        table += (digit.long() - 1).clamp_min(0) * scale
        scale *= base
        if scale >= n_in:
            return torch.where(present, table, torch.full_like(table, n_in))
