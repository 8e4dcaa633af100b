"""Per-channel Gaussian relative Fisher information and the log-Sobolev bound on KL (DESIGN.md §1).

For a channel with dense distribution p = N(mu, s2) and pruned distribution q = N(mu~, s2~):

    relative Fisher information  I(q || p) = dmu^2 / s2^2 + (s2~ - s2)^2 / (s2~ * s2^2)
    log-Sobolev inequality       KL(q || p) <= (s2 / 2) * I(q || p) = dmu^2 / (2 s2) + (r - 1)^2 / (2 r),  r = s2~/s2

(p is Gaussian, so it satisfies the LSI with constant s2.) Everything is differentiable and batched over channels.

Conditioning (why a smoothing variance): a channel that pruning kills has s2~ = 0, so r = 0 and the bound is
infinite; a dense channel with a tiny s2 makes dmu^2 / s2 and r explode. Both features are compared after adding the
same independent Gaussian noise N(0, eps) to each channel: p_eps = N(mu, s2 + eps), q_eps = N(mu~, s2~ + eps). These
are still Gaussians, the bound above is still the exact LSI bound of KL(q_eps || p_eps) (and, by the data-processing
inequality, KL(q_eps || p_eps) <= KL(q || p)). The noise level follows the larger of the two feature scales:

    eps = kappa * max(mean_c s2_c, mean_c s2~_c)        (kappa = SMOOTHING = 1e-2, no gradient through eps)

Consequences, each tested: a killed channel of average variance costs (r - 1)^2 / (2 r) with r = kappa / (1 + kappa),
about 49, finite and large; the dmu^2 term of a near-constant dense channel is at most dmu^2 / (2 eps); a collapsed
channel keeps a gradient that raises its variance (no clamp to sit at); the value is scale-free; and the variance
part of the channel mean is bounded by construction, whatever either side does: for r >= 1, (r - 1)^2 / (2 r) <= r / 2
and mean_c r_c <= 1 + mean_c s2~_c / eps <= 1 + 1 / kappa; symmetrically for r < 1. So
mean_c (r_c - 1)^2 / (2 r_c) <= 1 + 1 / kappa (= 101) per tapped tensor. (A reference that does not match the
student at all, e.g. eval-mode statistics of a randomly initialised model whose BN running statistics are still
(0, 1), therefore costs at most that much instead of 1e11.)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

SMOOTHING = 1e-2  # kappa: smoothing variance as a fraction of the mean dense channel variance
ABS_SMOOTHING = 1e-12  # floor of eps for an all-constant dense feature


def relative_fisher_information(*, mu_q: torch.Tensor, var_q: torch.Tensor, mu_p: torch.Tensor,
                                var_p: torch.Tensor) -> torch.Tensor:
    """I(q||p) = (mu_q - mu_p)^2 / var_p^2 + (var_q - var_p)^2 / (var_q * var_p^2), per channel."""
    return (mu_q - mu_p) ** 2 / var_p ** 2 + (var_q - var_p) ** 2 / (var_q * var_p ** 2)


def lsi_kl_bound(*, mu_q: torch.Tensor, var_q: torch.Tensor, mu_p: torch.Tensor,
                 var_p: torch.Tensor) -> torch.Tensor:
    """(var_p / 2) * I(q||p) = dmu^2 / (2 var_p) + (r - 1)^2 / (2 r) with r = var_q / var_p, per channel."""
    r = var_q / var_p
    return (mu_q - mu_p) ** 2 / (2 * var_p) + (r - 1) ** 2 / (2 * r)


def gaussian_kl(*, mu_q: torch.Tensor, var_q: torch.Tensor, mu_p: torch.Tensor, var_p: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(N(mu_q, var_q) || N(mu_p, var_p)), for checking the bound."""
    return 0.5 * (torch.log(var_p / var_q) + (var_q + (mu_q - mu_p) ** 2) / var_p - 1)


def smoothing_variance(var_p: torch.Tensor, var_q: torch.Tensor | None = None, *,
                       kappa: float = SMOOTHING) -> torch.Tensor:
    """eps = max(kappa * max(mean_c var_p, mean_c var_q), ABS_SMOOTHING): a constant (no gradient) for the tap."""
    scale = var_p.detach().clamp_min(0).mean()
    if var_q is not None:
        scale = torch.maximum(scale, var_q.detach().clamp_min(0).mean())
    return torch.clamp(scale * kappa, min=ABS_SMOOTHING)


def smoothed_divergence(*, mu_q: torch.Tensor, var_q: torch.Tensor, mu_p: torch.Tensor, var_p: torch.Tensor,
                        fisher: bool = False, kappa: float = SMOOTHING) -> torch.Tensor:
    """Per channel LSI-KL bound (or relative Fisher information) of the noise-smoothed features (module docstring).

    ``var_q`` / ``var_p`` may be zero (killed or dead channels): the result is finite by construction.
    """
    eps = smoothing_variance(var_p, var_q, kappa=kappa)
    fn = relative_fisher_information if fisher else lsi_kl_bound
    return fn(mu_q=mu_q, var_q=var_q.clamp_min(0) + eps, mu_p=mu_p, var_p=var_p.clamp_min(0) + eps)


def channel_moments(x: torch.Tensor, channel_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (biased) variance of ``x`` over every other dimension."""
    flat = x.movedim(channel_dim, -1).reshape(-1, x.shape[channel_dim])
    mu = flat.mean(0)
    var = (flat - mu).pow(2).mean(0)
    return mu, var


def feature_lsi(pruned: torch.Tensor, dense: torch.Tensor, *, channel_dim: int = 1,
                reduction: str = 'mean', fisher: bool = True) -> torch.Tensor:
    """Smoothed Gaussian relative Fisher information (``fisher=True``) or LSI-KL bound between two feature maps.

    ``dense`` is the reference p (typically detached); moments are taken per channel over the remaining dims.
    """
    mu_q, var_q = channel_moments(pruned, channel_dim)
    mu_p, var_p = channel_moments(dense, channel_dim)
    per_channel = smoothed_divergence(mu_q=mu_q, var_q=var_q, mu_p=mu_p, var_p=var_p, fisher=fisher)
    return per_channel.mean() if reduction == 'mean' else per_channel


@dataclass
class MomentAccumulator:
    """Running per-channel sums for dense and pruned features over several calibration batches."""

    n: int = 0
    s_p: torch.Tensor | None = None
    ss_p: torch.Tensor | None = None
    s_q: torch.Tensor | None = None
    ss_q: torch.Tensor | None = None

    @torch.no_grad()
    def add(self, pruned: torch.Tensor, dense: torch.Tensor, channel_dim: int) -> None:
        q = pruned.detach().movedim(channel_dim, -1).reshape(-1, pruned.shape[channel_dim]).double()
        p = dense.detach().movedim(channel_dim, -1).reshape(-1, dense.shape[channel_dim]).double()
        sums = (p.sum(0), (p * p).sum(0), q.sum(0), (q * q).sum(0))
        if self.s_p is None:
            self.s_p, self.ss_p, self.s_q, self.ss_q = sums
        else:
            self.s_p, self.ss_p, self.s_q, self.ss_q = (a + b for a, b in zip(
                (self.s_p, self.ss_p, self.s_q, self.ss_q), sums))
        self.n += p.shape[0]

    def kl_bound(self) -> float:
        """Channel-mean smoothed LSI-KL bound of the pooled moments (0 when nothing was added)."""
        if self.n == 0:
            return 0.0
        return float(pooled_kl_bounds(self.n, self.s_p, self.ss_p, self.s_q[None], self.ss_q[None])[0])


def pooled_kl_bounds(n: int, s_p: torch.Tensor, ss_p: torch.Tensor, s_q: torch.Tensor, ss_q: torch.Tensor, *,
                     kappa: float = SMOOTHING) -> torch.Tensor:
    """(K,) channel-mean smoothed LSI-KL bounds of K pruned versions (sums ``s_q`` / ``ss_q``, (K, C)) of one dense
    output (sums ``s_p`` / ``ss_p``, (C,)) over ``n`` rows: :meth:`MomentAccumulator.kl_bound` of every level of a
    layer in one call (one call per level cost more than measuring the levels)."""
    mu_p, mu_q = s_p / n, s_q / n
    var_p = (ss_p / n - mu_p ** 2).clamp_min(0)
    var_q = (ss_q / n - mu_q ** 2).clamp_min(0)
    scale = torch.maximum(var_p.mean(), var_q.mean(-1))  # smoothing_variance, per version
    eps = torch.clamp(scale * kappa, min=ABS_SMOOTHING)[:, None]
    return lsi_kl_bound(mu_q=mu_q, var_q=var_q + eps, mu_p=mu_p, var_p=var_p + eps).mean(-1)
