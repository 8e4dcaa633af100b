"""Level sums from patch moments: the blocked sweep equals the sum taken level by level, the rows / Gram switch."""
import pytest
import torch

from mmprune4u_plugin.core.gram_levels import PatchMoments, layer_level_sums, level_sums


def _direct(gram, m, w, b, rank, counts):
    """u = w masked to rank < count: m . u, u . (M w + b m), u^T M u, one level at a time."""
    pull = w @ gram + b[:, None] * m
    out = [[], [], []]
    for count in counts:
        u = w * (rank < count)
        for i, v in enumerate((u @ m, (u * pull).sum(1), ((u @ gram) * u).sum(1))):
            out[i].append(v)
    return [torch.stack(v) for v in out]


def _problem(channels, dim, levels, seed=0):
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(2 * dim, dim, generator=gen, dtype=torch.float64)
    w = torch.randn(channels, dim, generator=gen, dtype=torch.float64)
    b = torch.randn(channels, generator=gen, dtype=torch.float64)
    order = torch.sort(w.abs().flatten(), stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    counts = [round(s * w.numel()) for s in torch.linspace(0, 0.99, levels).tolist()]
    return p, w, b, rank.view(channels, dim), counts


@pytest.mark.parametrize('channels, dim, levels', [(5, 7, 4), (16, 40, 100), (3, 50, 2), (8, 20, 1), (2, 3, 30)])
def test_blocked_sweep_equals_levels_one_by_one(channels, dim, levels):
    p, w, b, rank, counts = _problem(channels, dim, levels)
    got = level_sums(gram=p.T @ p, patch_sum=p.sum(0), weight=w, bias=b, rank=rank, counts=counts)
    for g, r in zip(got, _direct(p.T @ p, p.sum(0), w, b, rank, counts)):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12 * float(r.abs().max()))


def test_patch_moments_keep_rows_then_switch_to_the_gram_matrix(monkeypatch):
    monkeypatch.setattr('mmprune4u_plugin.core.gram_levels.GRAM_BLOCK', 4)  # J = 10 > 2 blocks: upper block rows
    p, w, b, rank, counts = _problem(3, 10, 12)
    stats = PatchMoments()
    stats.add(p[None, :6])
    stats.add(p[None, 6:9])
    assert stats.upper is None and stats.count == 9  # 9 rows <= J = 10: the rows are kept
    from_rows = layer_level_sums(stats, weight=w[None], bias=b, rank=rank[None], counts=counts)
    stats.add(p[None, 9:])
    assert stats.rows == [] and stats.count == len(p)
    torch.testing.assert_close(stats.gram(0), p.T @ p, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats.total[0], p.sum(0), rtol=1e-12, atol=1e-12)
    from_gram = layer_level_sums(stats, weight=w[None], bias=b, rank=rank[None], counts=counts)
    refs = zip(_direct(p[:9].T @ p[:9], p[:9].sum(0), w, b, rank, counts),
               _direct(p.T @ p, p.sum(0), w, b, rank, counts), (1e-12,) * 3)
    for r, g, (ref_rows, ref_all, tol) in zip(from_rows, from_gram, refs):
        torch.testing.assert_close(r, ref_rows, rtol=1e-12, atol=1e-12 * float(ref_rows.abs().max()))
        torch.testing.assert_close(g, ref_all, rtol=tol, atol=tol * float(ref_all.abs().max()))


def test_many_levels_fold_the_kept_rows_into_the_gram_matrix():
    """9 rows, 30 channels, 100 levels: a product per level with the rows would cost more than the Gram matrix."""
    p, w, b, rank, counts = _problem(30, 10, 100)
    stats = PatchMoments()
    stats.add(p[None, :9])
    got = layer_level_sums(stats, weight=w[None], bias=b, rank=rank[None], counts=counts)
    assert stats.rows == [] and stats.upper is not None
    for g, r in zip(got, _direct(p[:9].T @ p[:9], p[:9].sum(0), w, b, rank, counts)):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12 * float(r.abs().max()))
