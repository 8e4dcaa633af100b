import math

import pytest
import torch

from mmprune4u_plugin.core.lsi import (MomentAccumulator, channel_moments, feature_lsi, gaussian_kl,
                                       lsi_kl_bound, relative_fisher_information, smoothed_divergence,
                                       smoothing_variance, SMOOTHING)


def test_closed_form_hand_values():
    # p = N(0, 1), q = N(1, 2): I = 1/1 + (2-1)^2/(2*1) = 1.5; bound = 1/2 + (2-1)^2/(2*2) = 0.75
    kw = dict(mu_q=torch.tensor([1.0]), var_q=torch.tensor([2.0]), mu_p=torch.tensor([0.0]),
              var_p=torch.tensor([1.0]))
    assert relative_fisher_information(**kw).item() == pytest.approx(1.5)
    assert lsi_kl_bound(**kw).item() == pytest.approx(0.75)
    # KL(N(1,2)||N(0,1)) = 0.5 (log(1/2) + 3 - 1) = 0.65343
    assert gaussian_kl(**kw).item() == pytest.approx(0.5 * (math.log(0.5) + 2))


def test_bound_is_var_over_two_times_fisher_and_dominates_kl():
    gen = torch.Generator().manual_seed(0)
    mu_p, mu_q = torch.randn(1000, generator=gen), torch.randn(1000, generator=gen)
    var_p, var_q = torch.rand(1000, generator=gen) + 0.05, torch.rand(1000, generator=gen) + 0.05
    kw = dict(mu_q=mu_q, var_q=var_q, mu_p=mu_p, var_p=var_p)
    torch.testing.assert_close(lsi_kl_bound(**kw), var_p / 2 * relative_fisher_information(**kw))
    assert torch.all(lsi_kl_bound(**kw) >= gaussian_kl(**kw) - 1e-6)
    assert torch.all(lsi_kl_bound(mu_q=mu_p, var_q=var_p, mu_p=mu_p, var_p=var_p) == 0)


def test_monte_carlo_fisher_information():
    # I(q||p) = E_q ||d/dx log(q/p)||^2, estimated by sampling x ~ q
    gen = torch.Generator().manual_seed(1)
    mu_p, var_p, mu_q, var_q = 0.3, 0.8, -0.4, 1.7
    x = mu_q + math.sqrt(var_q) * torch.randn(400_000, generator=gen, dtype=torch.float64)
    score = -(x - mu_q) / var_q + (x - mu_p) / var_p
    mc = float((score ** 2).mean())
    exact = relative_fisher_information(mu_q=torch.tensor(mu_q), var_q=torch.tensor(var_q),
                                        mu_p=torch.tensor(mu_p), var_p=torch.tensor(var_p)).item()
    assert mc == pytest.approx(exact, rel=0.02)


def test_feature_lsi_differentiable_and_zero_on_equal():
    gen = torch.Generator().manual_seed(2)
    dense = torch.randn(4, 3, 5, 5, generator=gen)
    assert feature_lsi(dense.clone(), dense).item() == 0
    pruned = (dense * 0.5 + 0.1).requires_grad_()
    loss = feature_lsi(pruned, dense, channel_dim=1)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(pruned.grad).all() and pruned.grad.abs().sum() > 0
    # per-channel: moments over every dim but the channel one
    mu, var = channel_moments(dense, 1)
    torch.testing.assert_close(mu, dense.mean((0, 2, 3)))
    torch.testing.assert_close(var, dense.var((0, 2, 3), unbiased=False))


def test_accumulator_pools_batches_like_concatenation():
    gen = torch.Generator().manual_seed(3)
    a = [torch.randn(7, 4, generator=gen) for _ in range(3)]
    b = [x * 1.3 + 0.2 for x in a]
    acc = MomentAccumulator()
    for q, p in zip(b, a):
        acc.add(q, p, -1)
    whole = feature_lsi(torch.cat(b).double(), torch.cat(a).double(), channel_dim=-1, fisher=False)
    assert acc.kl_bound() == pytest.approx(whole.item(), rel=1e-9)
    assert MomentAccumulator().kl_bound() == 0.0


def test_killed_channel_costs_a_fixed_finite_amount():
    # dense variances 1 and 1 -> eps = 0.01; channel 0 killed (constant at its mean): r = 0.01 / 1.01
    mu = torch.zeros(2)
    value = smoothed_divergence(mu_q=mu, var_q=torch.tensor([0.0, 1.0]), mu_p=mu, var_p=torch.ones(2))
    r = 0.01 / 1.01
    assert value[0].item() == pytest.approx((r - 1) ** 2 / (2 * r), rel=1e-6)  # about 49
    assert value[1].item() == 0.0


def test_tiny_dense_variance_is_bounded_by_the_smoothing():
    # channel 1 is (almost) constant in the dense model; its mean moves by 1: dmu^2 / (2 (var + eps)), eps = 0.005
    value = smoothed_divergence(mu_q=torch.tensor([0.0, 1.0]), var_q=torch.tensor([1.0, 1e-20]),
                                mu_p=torch.zeros(2), var_p=torch.tensor([1.0, 1e-20]), fisher=False)
    assert value[1].item() == pytest.approx(1 / (2 * (1e-20 + 0.005)), rel=1e-6)
    all_dead = smoothed_divergence(mu_q=torch.ones(3), var_q=torch.zeros(3), mu_p=torch.zeros(3), var_p=torch.zeros(3))
    assert torch.isfinite(all_dead).all()


def test_smoothed_bound_is_scale_free_and_dominates_the_smoothed_kl():
    gen = torch.Generator().manual_seed(5)
    dense = torch.randn(64, 6, generator=gen, dtype=torch.float64) * torch.tensor([1, 2, 1e-4, 0, 3, 1.0])
    pruned = dense * torch.tensor([0.5, 1, 1, 1, 0, 2.0]) + 0.1
    one = feature_lsi(pruned, dense, channel_dim=1, fisher=False, reduction='none')
    big = feature_lsi(1000 * pruned, 1000 * dense, channel_dim=1, fisher=False, reduction='none')
    torch.testing.assert_close(one, big)
    mu_q, var_q = channel_moments(pruned, 1)
    mu_p, var_p = channel_moments(dense, 1)
    eps = smoothing_variance(var_p, var_q)
    kl = gaussian_kl(mu_q=mu_q, var_q=var_q + eps, mu_p=mu_p, var_p=var_p + eps)
    assert torch.all(one >= kl - 1e-12) and torch.isfinite(one).all()


def test_collapsed_channel_gets_a_gradient_that_raises_its_variance():
    gen = torch.Generator().manual_seed(6)
    dense = torch.randn(128, 3, generator=gen, dtype=torch.float64)
    pruned = dense.clone()
    pruned[:, 0] = 0.3 + 1e-6 * dense[:, 0]  # collapsed: variance 1e-12 of the dense one
    pruned.requires_grad_()
    loss = feature_lsi(pruned, dense, channel_dim=1, fisher=False)
    loss.backward()
    with torch.no_grad():
        stepped = pruned - 1e3 * pruned.grad
    before, after = pruned[:, 0].detach().var(), stepped[:, 0].var()
    assert after > before * 10  # the descent direction spreads the collapsed channel out again


def test_variance_part_is_bounded_by_construction():
    # whatever the two sides do (collapse, explode, mismatch by 1e12), the channel-mean (r - 1)^2 / (2 r) <= 1 + 1/kappa
    gen = torch.Generator().manual_seed(7)
    for _ in range(200):
        c = int(torch.randint(1, 50, (1,), generator=gen))
        var_p = torch.exp(torch.randn(c, generator=gen, dtype=torch.float64) * 15) * torch.bernoulli(
            torch.full((c,), 0.8, dtype=torch.float64), generator=gen)
        var_q = torch.exp(torch.randn(c, generator=gen, dtype=torch.float64) * 15) * torch.bernoulli(
            torch.full((c,), 0.8, dtype=torch.float64), generator=gen)
        zero = torch.zeros(c, dtype=torch.float64)
        value = smoothed_divergence(mu_q=zero, var_q=var_q, mu_p=zero, var_p=var_p).mean()
        assert torch.isfinite(value) and value <= 1 + 1 / SMOOTHING
    # the eval-mode reference of a random model against its train-mode student (seen on BEVFusion-Lite): var 1e-9 vs
    # 0.04 used to cost 1e9; now at most 1 + 1 / kappa
    mismatch = smoothed_divergence(mu_q=torch.zeros(8), var_q=torch.full((8,), 0.04), mu_p=torch.zeros(8),
                                   var_p=torch.full((8,), 1e-9)).mean()
    assert 40 < mismatch <= 1 + 1 / SMOOTHING
