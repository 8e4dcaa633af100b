"""LogSobolevLoss: the finetuning regulariser lambda * sum_m w_m I_m (DESIGN.md §1 step 3).

I_m is the per-channel Gaussian relative Fisher information between the pruned model's features at modality m's tap
and a reference: the frozen dense model's features on the same batch (``reference='teacher'``) or the dense model's
per-channel statistics measured once on the calibration set (``reference='dense_stats'``, no teacher at train time).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from mmdet3d.registry import MODELS
from torch import nn

from ..core.lsi import channel_moments, lsi_kl_bound, relative_fisher_information, variance_floor


@MODELS.register_module()
class LogSobolevLoss(nn.Module):
    """Sum over modalities of w_m * channel-mean relative Fisher information I(pruned || dense).

    Args:
        loss_weight: lambda. Defaults to 1.0.
        modality_weights: w_m per modality; modalities not listed get 1. Defaults to None.
        form: ``fisher``: I itself (DESIGN.md; scales like 1/sigma^2, so lambda depends on the feature scale);
            ``kl_bound``: (sigma^2 / 2) I, the LSI bound on KL, scale-free. Defaults to ``fisher``.
    """

    def __init__(self, loss_weight: float = 1.0, modality_weights: Mapping[str, float] | None = None,
                 form: str = 'fisher') -> None:
        super().__init__()
        if loss_weight < 0:
            raise ValueError(f'`loss_weight` must be >= 0, but got loss_weight: {loss_weight}')
        if form not in ('fisher', 'kl_bound'):
            raise ValueError(f'`form` must be "fisher" or "kl_bound", but got form: {form!r}')
        self.fn = relative_fisher_information if form == 'fisher' else lsi_kl_bound
        self.loss_weight = float(loss_weight)
        self.modality_weights = dict(modality_weights or {})

    def forward(self, pruned: Mapping[str, Sequence[torch.Tensor]],
                reference: Mapping[str, Sequence[torch.Tensor] | Sequence[tuple[torch.Tensor, torch.Tensor]]],
                channel_dims: Mapping[str, int]) -> torch.Tensor:
        """``reference[m]`` holds dense tensors (teacher) or (mean, var) pairs (dense_stats), one per pruned tensor."""
        total = None
        for m, feats in pruned.items():
            refs = reference[m]
            if len(refs) != len(feats):
                raise ValueError(f'modality {m!r}: {len(feats)} pruned tensors but {len(refs)} references')
            for feat, ref in zip(feats, refs):
                mu_q, var_q = channel_moments(feat.float(), channel_dims[m])
                if isinstance(ref, torch.Tensor):
                    mu_p, var_p = channel_moments(ref.detach().float(), channel_dims[m])
                else:
                    mu_p, var_p = (r.to(feat.device, torch.float32) for r in ref)
                var_p = variance_floor(var_p)
                var_q = torch.maximum(var_q, var_p * 1e-6)
                term = self.modality_weights.get(m, 1.0) * self.fn(
                    mu_q=mu_q, var_q=var_q, mu_p=mu_p, var_p=var_p).mean()
                total = term if total is None else total + term
        if total is None:
            raise ValueError('LogSobolevLoss got no features')
        return self.loss_weight * total
