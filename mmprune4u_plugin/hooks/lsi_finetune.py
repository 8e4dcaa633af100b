"""Adds LogSobolevLoss to any mmdet3d model's loss dict, without changing the model's class or state-dict keys.

The model's ``loss`` method is overridden on the instance: it captures the features at the modality taps (forward
hooks), computes the reference (a frozen dense teacher on the same batch, or dense per-channel statistics), and adds
``loss_lsi`` to the dict the original ``loss`` returns. :meth:`remove` restores the model exactly.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from torch import nn

from ..core.curves import eval_mode
from ..core.taps import Tap, TapRecorder, run_to_taps
from ..losses import LogSobolevLoss
from .calibration import clone_tensors


class LSIFinetuner:
    """Installs the regulariser on ``model``.

    Args:
        model: The (unwrapped) model being finetuned.
        taps: Modality -> tap.
        loss: The LogSobolevLoss module.
        reference: ``teacher`` or ``dense_stats``.
        teacher: Frozen copy of the dense model (``teacher`` only; make it before pruning).
        dense_stats: Modality -> list of (mean, var) per tapped tensor (``dense_stats`` only).
    """

    def __init__(self, model: nn.Module, taps: Mapping[str, Tap], loss: LogSobolevLoss, *, reference: str,
                 teacher: nn.Module | None = None, dense_stats: Mapping[str, list[tuple[torch.Tensor, torch.Tensor]]] | None = None) -> None:
        if reference not in ('teacher', 'dense_stats'):
            raise ValueError(f'`reference` must be "teacher" or "dense_stats", but got reference: {reference!r}')
        if not taps:
            raise ValueError('the LSI loss needs at least one modality tap')
        self.model, self.taps, self.loss_fn, self.reference = model, dict(taps), loss, reference
        self.teacher = teacher if reference == 'teacher' else None
        if reference == 'teacher' and teacher is None:
            raise ValueError('reference "teacher" needs the dense teacher model')
        if self.teacher is not None:
            self.teacher.requires_grad_(False)
        if reference == 'dense_stats' and dense_stats is None:
            raise ValueError('reference "dense_stats" needs the dense statistics')
        self.dense_stats = dense_stats
        self._student = TapRecorder(model, self.taps, stop_early=False)
        self._original_loss = model.loss
        model.loss = self._loss

    @staticmethod
    def make_teacher(model: nn.Module) -> nn.Module:
        """A frozen copy of the (still dense) model."""
        teacher = copy.deepcopy(model)
        teacher.requires_grad_(False)
        return teacher

    def _loss(self, batch_inputs: Any, batch_data_samples: Any, **kwargs: Any) -> dict:
        reference = self._reference(batch_inputs, batch_data_samples)
        self._student.reset()
        with self._student:
            losses = self._original_loss(batch_inputs, batch_data_samples, **kwargs)
        feats = self._student.captured()
        dims = {m: tap.channel_dim for m, tap in self.taps.items()}
        losses['loss_lsi'] = self.loss_fn(feats, reference, dims)
        return losses

    def _reference(self, batch_inputs: Any, batch_data_samples: Any) -> dict:
        if self.teacher is None:
            return self.dense_stats
        self.teacher.eval()  # references are taken in eval mode (DESIGN §1.3): running BN statistics, no updates
        with torch.no_grad(), TapRecorder(self.teacher, self.taps, stop_early=True) as rec:
            return run_to_taps(self.teacher, _teacher_forward, (clone_tensors(batch_inputs), batch_data_samples),
                               rec)

    def remove(self) -> None:
        """Restore the model's own ``loss``."""
        if self.model.__dict__.get('loss') is not None:
            del self.model.loss


def _teacher_forward(model: nn.Module, batch: tuple) -> Any:
    """Run to the taps (the recorder stops the pass there, before any post-processing)."""
    inputs, samples = batch
    return model(inputs=inputs, data_samples=samples, mode='predict')


def dense_statistics(model: nn.Module, taps: Mapping[str, Tap], batches: list, forward_fn) -> dict:
    """Per-channel (mean, var) of the dense model at each tap, pooled over the calibration batches.

    Measured in eval mode (running BN statistics; the model's buffers are not updated), like every reference.
    """
    sums: dict[str, list[list[torch.Tensor]]] = {}
    count: dict[str, list[int]] = {}
    with torch.no_grad(), eval_mode(model), TapRecorder(model, dict(taps), stop_early=True) as rec:
        for batch in batches:
            feats = run_to_taps(model, forward_fn, batch, rec)
            for m, tensors in feats.items():
                for j, t in enumerate(tensors):
                    flat = t.detach().movedim(taps[m].channel_dim, -1).reshape(-1, t.shape[taps[m].channel_dim])
                    s = sums.setdefault(m, [])
                    c = count.setdefault(m, [])
                    if j == len(s):
                        s.append([flat.double().sum(0), flat.double().pow(2).sum(0)])
                        c.append(0)
                    else:
                        s[j][0] += flat.double().sum(0)
                        s[j][1] += flat.double().pow(2).sum(0)
                    c[j] += flat.shape[0]
    out = {}
    for m, per_tensor in sums.items():
        out[m] = []
        for (s1, s2), n in zip(per_tensor, count[m]):
            mu = s1 / n
            out[m].append((mu.float(), (s2 / n - mu * mu).clamp_min(0).float()))
    return out

