"""LogSobolevLoss against the closed-form per-channel formulas."""
import pytest
import torch

pytest.importorskip('mmdet3d')
from mmprune4u_plugin.core.lsi import channel_moments, smoothed_divergence  # noqa: E402
from mmprune4u_plugin.losses import LogSobolevLoss  # noqa: E402


def test_forms_match_closed_form_and_scale():
    gen = torch.Generator().manual_seed(0)
    dense = torch.randn(2, 3, 4, 4, generator=gen)
    pruned = dense * 0.7 + 0.2
    mu_q, var_q = channel_moments(pruned, 1)
    mu_p, var_p = channel_moments(dense, 1)
    kw = dict(mu_q=mu_q, var_q=var_q, mu_p=mu_p, var_p=var_p)
    fisher = LogSobolevLoss(loss_weight=2.0, modality_weights=dict(cam=0.5), form='fisher')
    assert fisher(dict(cam=[pruned]), dict(cam=[dense]), dict(cam=1)).item() == pytest.approx(
        2.0 * 0.5 * smoothed_divergence(**kw, fisher=True).mean().item(), rel=1e-5)
    bound = LogSobolevLoss(form='kl_bound')
    assert bound(dict(cam=[pruned]), dict(cam=[dense]), dict(cam=1)).item() == pytest.approx(
        smoothed_divergence(**kw).mean().item(), rel=1e-5)
    default = LogSobolevLoss()  # log(1 + B) per channel
    assert default(dict(cam=[pruned]), dict(cam=[dense]), dict(cam=1)).item() == pytest.approx(
        torch.log1p(smoothed_divergence(**kw)).mean().item(), rel=1e-5)
    # the KL bound is scale-free, the Fisher information is not
    assert bound(dict(cam=[10 * pruned]), dict(cam=[10 * dense]), dict(cam=1)).item() == pytest.approx(
        bound(dict(cam=[pruned]), dict(cam=[dense]), dict(cam=1)).item(), rel=1e-4)
    # dense statistics as the reference give the same value as the dense tensor
    stats = LogSobolevLoss(form='fisher')(dict(cam=[pruned]), dict(cam=[(mu_p, var_p)]), dict(cam=1))
    assert stats.item() == pytest.approx(fisher(dict(cam=[pruned]), dict(cam=[dense]), dict(cam=1)).item() / 1.0,
                                         rel=1e-5)


@pytest.mark.parametrize('kwargs, message', [(dict(loss_weight=-1), '`loss_weight` must be >= 0'),
                                             (dict(form='kl'), '`form` must be')])
def test_bad_args(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LogSobolevLoss(**kwargs)


def test_default_form_has_bounded_gradients_in_the_log_variance():
    # log(1 + B): d/d log(var_q) of the variance part is tanh(log r), so at most 1 in magnitude, for any collapse
    loss = LogSobolevLoss()
    for log_var in (-30.0, -8.0, -1.0, 0.0, 1.0, 8.0, 30.0):
        t = torch.tensor([log_var], dtype=torch.float64, requires_grad=True)
        feat = torch.tensor([-1.0, 1.0], dtype=torch.float64)[:, None] * torch.exp(t / 2)  # mean 0, var e^t
        value = loss(dict(cam=[feat]), dict(cam=[(torch.zeros(1), torch.ones(1))]), dict(cam=1))
        value.backward()
        assert torch.isfinite(value) and abs(t.grad.item()) <= 1.0 + 1e-9
