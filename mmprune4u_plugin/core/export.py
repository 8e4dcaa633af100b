"""Compressed sparse checkpoints: bitmask + non-zero values per pruned tensor, loading back to identical weights.

A tensor with n entries and density d costs n/8 bytes of mask + d*n*b bytes of values (b bytes per value) instead of
n*b: it is stored sparse when that is smaller, i.e. when d < 1 - 1/(8b) (about 97% for float32).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

SPARSE_KEY = '__mmprune4u_sparse__'


def compress_tensor(tensor: torch.Tensor) -> dict | torch.Tensor:
    """``{SPARSE_KEY: 1, shape, bitmask, values}`` when smaller than ``tensor``, else ``tensor`` itself."""
    if not tensor.is_floating_point() or tensor.numel() < 64:
        return tensor
    flat = tensor.detach().cpu().reshape(-1)
    keep = flat != 0
    values = flat[keep].clone()
    mask_bytes = (flat.numel() + 7) // 8
    if mask_bytes + values.numel() * values.element_size() >= flat.numel() * flat.element_size():
        return tensor
    bitmask = torch.from_numpy(np.packbits(keep.numpy()))
    return {SPARSE_KEY: 1, 'shape': list(tensor.shape), 'bitmask': bitmask, 'values': values}


def decompress_tensor(entry: dict | torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`compress_tensor` (bit-exact)."""
    if not isinstance(entry, dict) or SPARSE_KEY not in entry:
        return entry
    numel = int(np.prod(entry['shape'])) if entry['shape'] else 1
    keep = torch.from_numpy(np.unpackbits(entry['bitmask'].numpy())[:numel].astype(bool))
    out = torch.zeros(numel, dtype=entry['values'].dtype)
    out[keep] = entry['values']
    return out.view(entry['shape'])


def compress_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Every floating tensor that is smaller sparse is stored sparse; the rest is kept as is."""
    return {k: compress_tensor(v) if isinstance(v, torch.Tensor) else v for k, v in state_dict.items()}


def decompress_state_dict(state_dict: Mapping) -> dict:
    """A plain ``state_dict`` from :func:`compress_state_dict` output."""
    return {k: decompress_tensor(v) for k, v in state_dict.items()}


def is_compressed(state_dict: Mapping) -> bool:
    return any(isinstance(v, dict) and SPARSE_KEY in v for v in state_dict.values())
