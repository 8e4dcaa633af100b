"""spconv sparse convolutions as gathers of input features: the neighbour table, patch chunks, the Gram matrix.

Which input site feeds output site n through kernel offset o: first from the index pairs spconv kept for the conv's
``indice_key`` (:func:`pairs_table`, checked against the output), else read from the module itself: one call with
feature 0 = input index + 1 (float32 on CPU: exact below 2^24 sites per digit) and a weight that copies feature 0
at offset o to output channel o yields the (rows, offsets) neighbour table, whatever the kind (submanifold, strided,
transposed, inverse). Other dtypes (CUDA) send the index in base-256 digits, one call each. Patch row n is then the
input features at its neighbours (zeros where there is none), in the weight's (offset, C_in) order (KRSC).
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
    table = neighbour_table(conv, x, out.shape[0], output)
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
    table = neighbour_table(conv, x, out.shape[0], output)
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


def neighbour_table(conv: nn.Module, x: Any, n_out: int, output: Any = None) -> torch.Tensor | None:
    """(n_out, kernel volume) index of the input site that feeds each output site through each kernel offset (the
    number of input sites where there is none), read from ``conv`` itself (module docstring); None if the probe
    does not give one integer per entry. With the call's ``output``, spconv's own index pairs are tried first
    (no extra conv call), and kept only if they reproduce the output (:func:`pairs_table`)."""
    if output is not None:
        table = pairs_table(conv, x, output)
        if table is not None:
            return table
    n_in, device = x.features.shape[0], x.features.device
    kv = math.prod(conv.kernel_size)
    if kv == 1 and getattr(conv, 'subm', False) and n_out == n_in:
        # a 1x1x1 submanifold conv maps each site to itself (and spconv's 1x1 path reshapes the weight with the
        # module's own channel counts, so the probe below cannot run on it)
        return torch.arange(n_in, device=device)[:, None]
    dtype = torch.float32 if device.type == 'cpu' else x.features.dtype
    base = 2 ** 24 if device.type == 'cpu' else 256  # float32 integers are exact below 2^24 (CUDA: TF32, digits)
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


def pairs_table(conv: nn.Module, x: Any, output: Any, check_rows: int = 64) -> torch.Tensor | None:
    """The neighbour table from the index pairs spconv kept for ``conv.indice_key`` (native algorithm: pairs
    (2, kernel volume, L) of input and output sites per offset; a submanifold conv stores the offsets before the
    centre only, the rest are their mirror images and the centre is the identity; an inverse conv reads its
    forward conv's pairs backwards), or None when there are none or the table does not reproduce ``output`` on
    ``check_rows`` rows spread over it."""
    data = getattr(output, 'indice_dict', {}).get(getattr(conv, 'indice_key', None))
    pairs, counts = getattr(data, 'indice_pairs', None), getattr(data, 'indice_pair_num', None)
    kv = math.prod(conv.kernel_size)
    if pairs is None or counts is None or pairs.dim() != 3 or pairs.shape[:2] != (2, kv) or counts.numel() != kv:
        return None
    n_in, n_out = x.features.shape[0], output.features.shape[0]
    src, dst = (1, 0) if getattr(conv, 'inverse', False) else (0, 1)
    table = torch.full((n_out, kv), n_in, dtype=torch.long, device=x.features.device)
    counts = counts.long().tolist()
    centre = kv // 2
    mirrored = bool(getattr(conv, 'subm', False)) and not any(counts[centre:])
    for o, num in enumerate(counts):
        p_in, p_out = pairs[src, o, :num].long(), pairs[dst, o, :num].long()
        table[p_out, o] = p_in
        if mirrored:
            table[p_in, kv - 1 - o] = p_out
    if mirrored:
        if n_in != n_out:
            return None
        table[:, centre] = torch.arange(n_out, device=table.device)
    return table if _reproduces(conv, x.features, table, output.features, check_rows) else None


def _reproduces(conv: nn.Module, feats: torch.Tensor, table: torch.Tensor, out: torch.Tensor, rows: int) -> bool:
    """Whether gathering through ``table`` and applying the conv's weight (KRSC) gives ``out`` on a few rows."""
    if table.shape[0] == 0:
        return True
    pick = torch.linspace(0, table.shape[0] - 1, min(rows, table.shape[0]), device=table.device).long()
    sites = table[pick]  # (rows, kv); n_in: no neighbour
    present = sites < feats.shape[0]
    if feats.shape[0]:
        gathered = feats[sites.clamp(max=feats.shape[0] - 1)]
    else:
        gathered = feats.new_zeros(*sites.shape, feats.shape[1])
    patches = torch.where(present[..., None], gathered.double(), 0.0)
    patches = patches.reshape(pick.numel(), -1)
    weight = conv.weight.detach().double().reshape(conv.weight.shape[0], -1)
    rec = patches @ weight.T
    if getattr(conv, 'bias', None) is not None:
        rec = rec + conv.bias.detach().double()
    ref = out[pick].detach().double()
    return bool(torch.allclose(rec, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max() if ref.numel() else 0) + 1e-9))
