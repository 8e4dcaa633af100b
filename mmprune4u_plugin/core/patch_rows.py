"""Squared norms of all of a layer's patch rows, and the rows themselves at chosen positions only.

The sampled layer-local regulariser (sampled_levels.py) keeps a few rows per call, chosen by their squared norm.
Forming every patch row to pick a few would cost more than the layer's forward (a 3x3 conv's patches are 9 times
its input); here the norms come without the patches and only the chosen rows are gathered:

- Linear: the input rows themselves.
- Conv (any stride, padding, dilation, groups; transposed): |P_n|^2 is the per-pixel sum of x^2 over the input
  channels, summed over each window (a one-channel conv with a kernel of ones); the chosen rows are read from the
  unfolded input, a view, by advanced indexing.
- spconv: |P_n|^2 is the sum of the neighbours' feature norms over the neighbour table (sparse_patches.py).

Rows are ordered as the runner's output flattened to (rows, channels), the order of patches.py's chunks.
Other runners (attention out_proj) return None: the caller forms their chunks.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import is_sparse_conv
from .patches import _conv_input  # the padded / spread input, as the chunks see it
from .sparse_patches import NotAffine, neighbour_table, with_reused_pairs

RowGather = Callable[[torch.Tensor], torch.Tensor]  # flat row indices (k,) -> patches (groups, k, J)


def patch_rows(runner: nn.Module, args: tuple, kwargs: dict, output: Any) -> tuple[torch.Tensor, RowGather] | None:
    """(squared norm of every patch row (rows,), a function that gathers the rows at given indices), or None."""
    x = args[0] if args else kwargs.get('input')
    if isinstance(runner, nn.Linear):
        flat = x.detach().reshape(-1, x.shape[-1])
        return flat.float().square().sum(1), lambda idx: flat[idx][None]
    if isinstance(runner, nn.modules.conv._ConvNd):
        return _conv_rows(runner, *_conv_input(runner, args, kwargs, output)[:2])
    if is_sparse_conv(runner) and hasattr(output, 'features'):
        return _sparse_rows(runner, args, output)
    return None


def _conv_rows(conv: nn.Module, x: torch.Tensor, stride: tuple[int, ...]) -> tuple[torch.Tensor, RowGather]:
    x, nd = x.detach(), len(conv.kernel_size)
    xf = x.float()
    energy = (xf * xf).sum(1, keepdim=True)  # ~2x faster than square(): no pow kernel
    ones = energy.new_ones(1, 1, *conv.kernel_size)
    norms = getattr(F, f'conv{nd}d')(energy, ones, stride=stride, dilation=conv.dilation)
    out_shape = norms.shape[2:]
    groups = conv.groups
    offsets = [torch.arange(k, device=x.device) * d for k, d in zip(conv.kernel_size, conv.dilation)]

    def gather(idx: torch.Tensor) -> torch.Tensor:
        # x[b, :, o1 s1 + k1 d1, ...] read directly, (k, k1..kd, Cin): advanced indexing of the strided windows
        # view was ~5x slower
        pos = torch.unravel_index(idx, (x.shape[0], *out_shape))
        lead = [-1] + [1] * nd
        index = [pos[0].view(lead)]
        for i, (o, s, off) in enumerate(zip(pos[1:], stride, offsets)):
            shape = [1] * (nd + 1)
            shape[1 + i] = -1
            index.append(o.view(lead) * s + off.view(shape))
        picked = x[(index[0], slice(None), *index[1:])].movedim(-1, 1)  # (k, Cin, k1..kd)
        return picked.reshape(idx.numel(), groups, -1).transpose(0, 1)
    return norms.reshape(-1), gather


def _sparse_rows(conv: nn.Module, args: tuple, output: Any) -> tuple[torch.Tensor, RowGather]:
    x = with_reused_pairs(conv, args, output)[0]
    table = neighbour_table(conv, x, output.features.shape[0], output)
    if table is None:
        raise NotAffine(f'{type(conv).__name__}: the neighbour probe gave no integer index table')
    feats = x.features.detach()
    feats = torch.cat([feats, feats.new_zeros(1, feats.shape[1])])  # row n_in: no neighbour
    feats32 = feats.float()
    norms = torch.linalg.vecdot(feats32, feats32)[table].sum(1)
    kv_channels = table.shape[1] * feats.shape[1]
    return norms, lambda idx: feats[table[idx]].reshape(1, idx.numel(), kv_channels)
