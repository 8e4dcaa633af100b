"""Initialise a fused LiDAR-camera model from single-sensor checkpoints (BEVFusion's two-stage recipe).

BEVFusion trains the fused model from a LiDAR-only checkpoint and a pretrained camera branch. Here every weight is
taken from the checkpoint that has it with the same shape (the LiDAR one first: it also holds the BEV backbone, neck
and head the fused model keeps), and the fuser's first conv, whose input is ``cat([camera BEV, LiDAR BEV])``, gets
the LiDAR checkpoint's kernel on the LiDAR channels and zeros on the camera channels. The fused model then computes
exactly the LiDAR-only model's output at the start, and the camera slice learns from there (a zero-initialised
branch, so fusing can only start from the LiDAR model, not below it).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import torch


def fused_state_dict(fused: Mapping[str, torch.Tensor], lidar: Mapping[str, torch.Tensor],
                     camera: Mapping[str, torch.Tensor] | None, fuser_weight: str,
                     camera_channels: int) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """The fused model's state dict assembled from single-sensor ones.

    Args:
        fused: The freshly initialised fused model's state dict (names, shapes, and the values kept when no
            checkpoint has a key).
        lidar: LiDAR-only model's state dict.
        camera: Camera-only model's state dict, or None to keep the camera branch's initial weights.
        fuser_weight: Key of the fuser conv kernel ``[out, camera_channels + lidar_channels, ...]``.
        camera_channels: How many input channels of that kernel the camera BEV map fills (it comes first).

    Returns:
        (state dict, provenance): provenance lists the keys taken from ``lidar``, from ``camera``, ``assembled``
        (the fuser kernel) and ``initial`` (kept from ``fused``). The state dict keeps ``fused``'s ``_metadata``.
    """
    if fuser_weight not in fused:
        raise KeyError(f'the fused model has no {fuser_weight!r}')
    if fuser_weight not in lidar:
        raise KeyError(f'the LiDAR checkpoint has no {fuser_weight!r}')
    kernel, lidar_kernel = fused[fuser_weight], lidar[fuser_weight]
    expected = (kernel.shape[0], kernel.shape[1] - camera_channels, *kernel.shape[2:])
    if tuple(lidar_kernel.shape) != expected:
        raise ValueError(f'fuser kernel shapes do not fit: fused {tuple(kernel.shape)} with {camera_channels} '
                         f'camera channels needs a LiDAR kernel of {expected}, got {tuple(lidar_kernel.shape)}')
    out: dict[str, torch.Tensor] = OrderedDict()
    if hasattr(fused, '_metadata'):  # module versions: spconv layers of mmdet3d permute kernels without them
        out._metadata = OrderedDict(fused._metadata)
    origin: dict[str, list[str]] = {'lidar': [], 'camera': [], 'assembled': [], 'initial': []}
    for key, value in fused.items():
        if key == fuser_weight:
            assembled = torch.zeros_like(value)
            assembled[:, camera_channels:] = lidar_kernel.to(value.dtype)
            out[key] = assembled
            origin['assembled'].append(key)
            continue
        for name, source in (('lidar', lidar), ('camera', camera or {})):
            if key in source and source[key].shape == value.shape:
                out[key] = source[key].to(value.dtype).clone()
                origin[name].append(key)
                break
        else:
            out[key] = value.clone()
            origin['initial'].append(key)
    if not origin['lidar']:
        raise ValueError('no key of the LiDAR checkpoint fits the fused model: is it the right checkpoint?')
    if camera is not None and not origin['camera']:
        raise ValueError('no key of the camera checkpoint fits the fused model: is it the right checkpoint?')
    return out, origin
