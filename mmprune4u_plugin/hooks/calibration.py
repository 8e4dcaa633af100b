"""Calibration batches from an mmdet3d dataloader, and the forward function the core's curve estimators call.

Batches are run through the model's data preprocessor once (voxelisation is deterministic in eval mode), so the
estimators' many passes only run the network. The forward uses ``mode='predict'``: heads are then called through
``__call__`` (hooks fire; ``mode='tensor'`` calls ``head.forward`` directly in SingleStage3DDetector), and the
estimators stop the pass once their last tap is captured, before any post-processing.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from ..core.layers import canonical_name
from ..core.taps import Tap


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP-style wrappers."""
    while hasattr(model, 'module') and isinstance(model.module, nn.Module):
        model = model.module
    return model


def collect_batches(model: nn.Module, dataloader: Iterable, num_batches: int) -> list[dict]:
    """Preprocess the first ``num_batches`` batches of ``dataloader`` (eval-mode preprocessing)."""
    if num_batches < 1:
        raise ValueError(f'`num_batches` must be >= 1, but got num_batches: {num_batches}')
    batches = []
    with torch.no_grad():
        for data in dataloader:
            batches.append(model.data_preprocessor(data, False))
            if len(batches) == num_batches:
                break
    if not batches:
        raise ValueError('calibration data is empty: the calibration dataloader yielded no batch')
    return batches


def clone_tensors(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_tensors(x) for x in obj)
    if isinstance(obj, dict):
        return {k: clone_tensors(v) for k, v in obj.items()}
    return obj


def mmdet3d_forward(model: nn.Module, data: dict) -> Any:
    """One network pass of an mmdet3d model on a preprocessed batch.

    The inputs are cloned: some encoders write into their input in place (PillarFeatureNet's
    ``features[:, :, :3]`` centering), which would make every later pass see different voxels.
    """
    return model(inputs=clone_tensors(data['inputs']), data_samples=data.get('data_samples'), mode='predict')


def default_head_name(model: nn.Module) -> str:
    """``bbox_head`` / ``pts_bbox_head`` / ``decode_head``: the first head module the model has."""
    names = {canonical_name(n) for n, _ in unwrap(model).named_children()}
    for name in ('pts_bbox_head', 'bbox_head', 'decode_head'):
        if name in names:
            return name
    raise ValueError(f'cannot find a dense head in {sorted(names)}: set `taps.task` explicitly')


def default_task_taps(model: nn.Module) -> list[Tap]:
    """Task taps: the head's input (the fused BEV map) and its raw output (so head layers get a cost too).

    mmdet3d's segmentors call ``decode_head.forward`` / ``decode_head.predict`` directly, not through
    ``__call__``, so hooks on the head itself never fire; its classifier ``conv_seg`` (called as a module, input =
    the backbone's per-voxel features, output = the class logits) stands in for it.
    """
    head = default_head_name(model)
    if head == 'decode_head' and hasattr(getattr(unwrap(model), head), 'conv_seg'):
        head = 'decode_head.conv_seg'
    return [Tap(head, 'input'), Tap(head, 'output')]
