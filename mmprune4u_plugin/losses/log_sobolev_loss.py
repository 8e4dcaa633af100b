"""LogSobolevLoss: the finetuning regulariser lambda * sum_m w_m B_m (DESIGN.md §1 step 3).

B_m is the per-channel Gaussian LSI bound on KL(pruned || dense) at modality m's tap, of the noise-smoothed features
(:mod:`mmprune4u_plugin.core.lsi`): finite for killed channels and tiny dense variances, scale-free, and with a
gradient that raises a collapsed channel's variance. The default form trains on log(1 + B) per channel.

Why log(1 + B): the variance part of B is f(r) = (r - 1)^2 / (2 r) = cosh(log r) - 1, exponentially steep in the
log-variance; a half-collapsed channel (r = 0.05) has d f / d r = -200, and with lambda = 10 a few SGD steps overshoot
and diverge (reproduced in tests/hooks/test_lsi_finetune_stability.py). log(1 + f) = log cosh(log r) has the gradient
tanh(log r) in the log-variance, bounded by 1, and the mean part's gradient is at most 1 / sqrt(2 (var + eps)):
well-conditioned by construction. It is a monotone function of the LSI bound with the same zero (the two Gaussians
match), equal to B to first order for small distortions, so the regulariser is still the LSI bound on KL; only large,
already-saturated distortions are weighed less. The reference is the frozen dense model's features on the same
batch (``reference='teacher'``) or the dense model's per-channel statistics measured once on the calibration set
(``reference='dense_stats'``, no teacher at train time).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from mmdet3d.registry import MODELS
from mmengine.registry import MODELS as ENGINE_MODELS
from torch import nn

from ..core.lsi import channel_moments, smoothed_divergence


FORMS = ('log_kl_bound', 'kl_bound', 'fisher')


@ENGINE_MODELS.register_module()  # also buildable without mmdet3d's default scope
@MODELS.register_module()
class LogSobolevLoss(nn.Module):
    """Sum over modalities of w_m * channel-mean smoothed LSI divergence between pruned and dense features.

    Args:
        loss_weight: lambda. Defaults to 1.0.
        modality_weights: w_m per modality; modalities not listed get 1. Defaults to None.
        form: ``log_kl_bound``: log(1 + B) per channel, B the LSI bound on KL (scale-free, bounded gradients;
            default); ``kl_bound``: B itself, (sigma^2 / 2) I(q||p); ``fisher``: the relative Fisher information I,
            which scales like 1 / sigma^2 (lambda then depends on the feature scale). All use the smoothed
            variances. Defaults to ``log_kl_bound``.
    """

    def __init__(self, loss_weight: float = 1.0, modality_weights: Mapping[str, float] | None = None,
                 form: str = 'log_kl_bound') -> None:
        super().__init__()
        if loss_weight < 0:
            raise ValueError(f'`loss_weight` must be >= 0, but got loss_weight: {loss_weight}')
        if form not in FORMS:
            raise ValueError(f'`form` must be one of {FORMS}, but got form: {form!r}')
        self.fisher = form == 'fisher'
        self.log = form == 'log_kl_bound'
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
                per_channel = smoothed_divergence(mu_q=mu_q, var_q=var_q, mu_p=mu_p, var_p=var_p, fisher=self.fisher)
                if self.log:
                    per_channel = torch.log1p(per_channel)
                term = self.modality_weights.get(m, 1.0) * per_channel.mean()
                total = term if total is None else total + term
        if total is None:
            raise ValueError('LogSobolevLoss got no features')
        return self.loss_weight * total
