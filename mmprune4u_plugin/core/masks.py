"""Exact magnitude masks, kept as bool buffers on a tiny module, and sparsity statistics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn


def magnitude_mask(weight: torch.Tensor, sparsity: float, *, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Bool mask (True = keep) that zeros exactly round(sparsity * n) weights of smallest magnitude.

    Ties are broken by flat index (stable sort), so the mask is deterministic. Weights already pruned
    (``keep`` False) are ranked first, so raising the sparsity never revives a weight.
    """
    if not 0.0 <= float(sparsity) <= 1.0:
        raise ValueError(f'`sparsity` must be in [0, 1], but got sparsity: {sparsity}')
    n = weight.numel()
    k = int(round(float(sparsity) * n))
    score = weight.detach().abs().flatten().to(torch.float64)
    if keep is not None:
        if int((~keep).sum()) > k:
            raise ValueError(f'sparsity {sparsity} would revive pruned weights: '
                             f'{int((~keep).sum())} already pruned > {k}')
        score = torch.where(keep.flatten(), score, torch.full_like(score, -1.0))
    mask = torch.ones(n, dtype=torch.bool, device=weight.device)
    if k > 0:
        order = torch.sort(score, stable=True).indices
        mask[order[:k]] = False
    return mask.view_as(weight)


class PruningMask(nn.Module):
    """Holds one layer's mask as a bool buffer; the buffer object is never replaced, only its contents."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer('mask', torch.ones(tuple(shape), dtype=torch.bool))
        self._factor: torch.Tensor | None = None
        self._factor_key: tuple | None = None

    @torch.no_grad()
    def update(self, new_mask: torch.Tensor) -> None:
        """Copy ``new_mask`` into the buffer in place."""
        if new_mask.shape != self.mask.shape:
            raise ValueError(f'mask shape {tuple(new_mask.shape)} != {tuple(self.mask.shape)}')
        self.mask.copy_(new_mask)

    def keep_factor(self) -> torch.Tensor:
        """The mask as uint8 (1 = keep), for the in-place multiply that re-applies it every step.

        Multiplying by uint8 in place costs a fraction of ``masked_fill_`` with a bool mask on the CPU (2.5 vs 20 ms
        per step on BEVFusion-Lite's 3.3M prunable weights). Cached, and rebuilt whenever the mask buffer is replaced
        (``.to(device)``) or changed in place (``update``, ``load_state_dict``: the buffer's version counter moves).
        """
        key = (self.mask.data_ptr(), self.mask._version, self.mask.device)
        if self._factor_key != key:
            self._factor = self.mask.to(torch.uint8)
            self._factor_key = key
        return self._factor

    @property
    def sparsity(self) -> float:
        """Fraction of pruned entries."""
        return 1.0 - float(self.mask.sum()) / self.mask.numel()

    def get_config(self) -> dict:
        """Plain data to rebuild an empty mask of the same shape."""
        return {'shape': list(self.mask.shape)}

    @classmethod
    def from_config(cls, config: dict) -> 'PruningMask':
        """Rebuild from :meth:`get_config` output (before ``load_state_dict``)."""
        return cls(config['shape'])


@torch.no_grad()
def zero_pruned_(tensor: torch.Tensor, pm: PruningMask) -> torch.Tensor:
    """Set the pruned entries of ``tensor`` (a weight or its gradient) to exactly 0, in place; returns it.

    A multiply by the uint8 mask, then one sum to check that nothing non-finite survived it (inf or NaN times 0 is
    NaN): only then the slow ``masked_fill_``. A sum is finite only if every entry is, so the check never misses."""
    tensor.mul_(pm.keep_factor())
    if not bool(torch.isfinite(tensor.sum())):
        tensor.masked_fill_(~pm.mask, 0)
    return tensor


@dataclass(frozen=True)
class LayerSparsity:
    """Zeros of one layer."""

    name: str
    modality: str
    numel: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel


@dataclass(frozen=True)
class SparsityReport:
    """Per-layer, per-modality and global sparsity; ``str()`` prints a table."""

    layers: tuple[LayerSparsity, ...]

    @property
    def total(self) -> int:
        return sum(x.numel for x in self.layers)

    @property
    def zeros(self) -> int:
        return sum(x.zeros for x in self.layers)

    @property
    def global_sparsity(self) -> float:
        return self.zeros / self.total

    def by_modality(self) -> dict[str, tuple[int, int, float]]:
        """modality -> (weights, zeros, sparsity)."""
        out: dict[str, list[int]] = {}
        for x in self.layers:
            acc = out.setdefault(x.modality, [0, 0])
            acc[0] += x.numel
            acc[1] += x.zeros
        return {m: (n, z, z / n) for m, (n, z) in out.items()}

    def __str__(self) -> str:
        width = max([len(x.name) for x in self.layers] + [5])
        rows = [f'{"layer":<{width}}  {"modality":<10} {"weights":>10} {"sparsity":>9}']
        rows += [f'{x.name:<{width}}  {x.modality:<10} {x.numel:>10d} {x.sparsity:>9.4f}' for x in self.layers]
        rows += [f'{"[" + m + "]":<{width}}  {"":<10} {n:>10d} {s:>9.4f}' for m, (n, z, s) in self.by_modality().items()]
        rows.append(f'{"[global]":<{width}}  {"":<10} {self.total:>10d} {self.global_sparsity:>9.4f}')
        return '\n'.join(rows)


def sparsity_report(weights: Sequence[tuple[str, str, torch.Tensor]]) -> SparsityReport:
    """Count exact zeros of (name, modality, weight) triples."""
    return SparsityReport(tuple(LayerSparsity(n, m, w.numel(), int((w == 0).sum())) for n, m, w in weights))
