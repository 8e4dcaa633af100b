"""BEV pooling in pure PyTorch: sum point features into a bird's-eye-view grid.

The CUDA ``bev_pool`` op of BEVFusion sorts the frustum points by cell and reduces runs; here the same sum is one
``index_add_`` over the points that fall inside the grid, so it runs (and back-propagates) on any device.

Layout: the output is channel-first with rows = y and columns = x, ``(B, C * nz, ny, nx)``, the layout of mmdet3d's
LiDAR BEV maps (``SparseEncoder`` densifies ``(batch, z, y, x)`` voxel coordinates and folds z into channels;
``PointPillarsScatter`` writes ``canvas[:, y * nx + x]``), and the layout ``CenterHead`` indexes its targets with
(``heatmap[cls, y, x]``). Camera and LiDAR BEV maps built on the same range and cell size therefore align cell by cell.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

Bound = Sequence[float]


def grid_size(bound: Bound) -> int:
    """Number of cells of a ``(min, max, step)`` bound."""
    low, high, step = bound
    return int(round((high - low) / step))


def bev_cell_index(coords: Tensor, *, xbound: Bound, ybound: Bound, zbound: Bound) -> tuple[Tensor, Tensor]:
    """Flat cell index ``(z * ny + y) * nx + x`` of each point, and whether the point lies inside the grid.

    A point at coordinate ``c`` is in cell ``floor((c - min) / step)``; cells are half-open, so a point exactly on
    ``max`` is outside.

    Args:
        coords (Tensor): ``(..., 3)`` metric x, y, z.
        xbound, ybound, zbound: ``(min, max, step)`` of each axis.

    Returns:
        tuple[Tensor, Tensor]: ``(...)`` int64 index (arbitrary where outside) and ``(...)`` bool inside mask.
    """
    cells, inside = [], torch.ones(coords.shape[:-1], dtype=torch.bool, device=coords.device)
    for axis, bound in enumerate((xbound, ybound, zbound)):
        cell = torch.floor((coords[..., axis] - bound[0]) / bound[2]).long()
        inside &= (cell >= 0) & (cell < grid_size(bound))
        cells.append(cell)
    nx, ny = grid_size(xbound), grid_size(ybound)
    return (cells[2] * ny + cells[1]) * nx + cells[0], inside


def bev_pool(coords: Tensor, feats: Tensor, *, xbound: Bound, ybound: Bound, zbound: Bound) -> Tensor:
    """Sum ``feats`` of all points in each BEV cell; points outside the grid are dropped.

    ``out[b, z * C + c, y, x] = sum of feats[b, ..., c] over the points of sample b in cell (x, y, z)``: the z cells
    are folded into channels (z-major, as BEVFusion does), so with a single z cell the output has C channels.

    Args:
        coords (Tensor): ``(B, ..., 3)`` metric point coordinates, e.g. frustum points ``(B, N, D, H, W, 3)``.
        feats (Tensor): ``(B, ..., C)`` features with the same leading shape as ``coords``.
        xbound, ybound, zbound: ``(min, max, step)`` of each axis.

    Returns:
        Tensor: ``(B, C * nz, ny, nx)``.
    """
    if coords.shape[-1] != 3 or coords.shape[:-1] != feats.shape[:-1]:
        raise ValueError(f'`coords` must be (B, ..., 3) and `feats` (B, ..., C) with the same leading shape, but got '
                         f'coords: {tuple(coords.shape)}, feats: {tuple(feats.shape)}')
    batch, channels = coords.shape[0], feats.shape[-1]
    nx, ny, nz = grid_size(xbound), grid_size(ybound), grid_size(zbound)
    cell, inside = bev_cell_index(coords, xbound=xbound, ybound=ybound, zbound=zbound)
    sample = torch.arange(batch, device=coords.device).view(-1, *([1] * (cell.dim() - 1)))
    index = (cell + sample * (nz * ny * nx))[inside]
    out = feats.new_zeros(batch * nz * ny * nx, channels)
    out.index_add_(0, index, feats[inside])
    out = out.view(batch, nz, ny, nx, channels).permute(0, 1, 4, 2, 3)
    return out.reshape(batch, nz * channels, ny, nx)
