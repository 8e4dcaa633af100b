import datetime
import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import TwoBranchNet, arange_
from mmprune4u_plugin.core.layers import find_prunable_layers
from mmprune4u_plugin.core.masks import PruningMask, magnitude_mask, zero_pruned_
from mmprune4u_plugin.core.pruner import Pruner


def test_magnitude_mask_exact_count_and_ties_by_index():
    w = torch.tensor([[0.5, -0.1, 0.1], [0.3, -0.1, 2.0]])
    assert magnitude_mask(w, 0.5).tolist() == [[True, False, False], [True, False, True]]
    # 0.4 * 6 = 2.4 -> 2 zeros: the two -0.1/0.1 ties broken by index (1, then 2)
    assert magnitude_mask(w, 0.4).tolist() == [[True, False, False], [True, True, True]]
    assert magnitude_mask(w, 0.0).all()
    assert not magnitude_mask(w, 1.0).any()


@pytest.mark.parametrize('sparsity', [-0.1, 1.5])
def test_magnitude_mask_bad_sparsity(sparsity):
    with pytest.raises(ValueError, match='`sparsity` must be in'):
        magnitude_mask(torch.ones(3), sparsity)


def test_magnitude_mask_never_revives():
    w = torch.tensor([5.0, 1.0, 2.0, 3.0])
    keep = torch.tensor([False, True, True, True])  # the largest weight was pruned earlier
    assert magnitude_mask(w, 0.5, keep=keep).tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match='would revive pruned weights'):
        magnitude_mask(w, 0.0, keep=keep)


def test_property_exact_counts_random():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        n = int(torch.randint(1, 500, (1,), generator=gen))
        s = float(torch.rand(1, generator=gen))
        w = torch.randint(-3, 4, (n,), generator=gen).float()  # many ties
        mask = magnitude_mask(w, s)
        assert int((~mask).sum()) == round(s * n)
        if 0 < (~mask).sum() < n:
            assert w[~mask].abs().max() <= w[mask].abs().min()


def test_pruning_mask_config_roundtrip():
    pm = PruningMask((2, 3))
    buf = pm.mask
    pm.update(torch.tensor([[True, False, True], [False, False, True]]))
    assert pm.mask is buf and pm.sparsity == 0.5
    clone = PruningMask.from_config(pm.get_config())
    clone.load_state_dict(pm.state_dict())
    assert torch.equal(clone.mask, pm.mask)


def test_pruner_masks_weights_grads_and_survives_sgd():
    model, pruner = _half_pruned_two_branch()
    report = pruner.report()
    assert report.zeros == sum(round(0.5 * lay.numel) for lay in pruner.layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=0.1)
    for _ in range(3):
        out = model(torch.randn(2, 3, 4, 4), torch.randn(2, 5, 5)).pow(2).mean()
        opt.zero_grad()
        out.backward()
        w = model.img_backbone[0].weight
        assert torch.all(w.grad[~pruner.mask_of('img_backbone.0.weight')] == 0)
        opt.step()
        pruner.apply()
    assert pruner.report().zeros == report.zeros
    assert set(pruner.report().by_modality()) == {'camera', 'lidar', 'other'}
    assert 'img_backbone.0.weight' in str(report) and '[global]' in str(report)


def test_pruner_state_dict_roundtrip_and_plain_keys():
    model = arange_(TwoBranchNet())
    layers = find_prunable_layers(model)
    pruner = Pruner(layers)
    pruner.prepare(model)
    keys_before = set(model.state_dict())
    pruner.set_sparsities({layers[0].name: 0.25, layers[1].name: 0.75})
    assert set(model.state_dict()) == keys_before  # masks are not model keys
    state = pruner.state_dict()
    assert all(e['mask'].dtype == torch.uint8 for e in state['layers'])
    other = Pruner(find_prunable_layers(TwoBranchNet()))
    other.load_state_dict(state)
    for lay in layers:
        assert torch.equal(other.mask_of(lay.name), pruner.mask_of(lay.name))
    bad = Pruner(find_prunable_layers(TwoBranchNet(), include=['img_']))
    with pytest.raises(ValueError, match='saved masks do not match'):
        bad.load_state_dict(state)


def test_pruner_squash_removes_only_its_hooks():
    model = arange_(TwoBranchNet())
    w = model.img_backbone[0].weight
    calls = []
    w.register_hook(lambda g: calls.append(1))
    pruner = Pruner(find_prunable_layers(model))
    pruner.prepare(model)
    pruner.set_sparsities({'img_backbone.0.weight': 0.5})
    pruner.squash()
    model(torch.randn(1, 3, 4, 4), torch.randn(1, 5, 5)).sum().backward()
    assert calls == [1]
    assert int((w.grad != 0).sum()) > 54  # grads no longer masked
    assert int((w == 0).sum()) == 54


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_magnitude_order_sorts_like_the_magnitudes(dtype):
    """The integer-view sort equals a stable sort of the float magnitudes: ties (by index), +-0, subnormals, inf."""
    from mmprune4u_plugin.core.local_lsi import magnitude_order
    tiny = torch.finfo(dtype).tiny
    values = torch.tensor([0.5, -0.5, 0.0, -0.0, tiny / 4, -tiny / 2, 3.0, float('inf'), -1e-3, 1e-3, 2.0, -2.0],
                          dtype=dtype)
    weight = torch.cat([values, torch.randn(500, dtype=torch.float64).to(dtype)]).view(4, -1)
    expected = torch.sort(weight.abs().reshape(-1).double(), stable=True).indices
    assert torch.equal(magnitude_order(weight), expected)
    assert magnitude_order(values)[:4].tolist() == [2, 3, 4, 5]  # the zeros by index, then the subnormals


def test_apply_zeros_non_finite_pruned_slots_and_indexes_the_model_once(monkeypatch):
    """Re-application runs every step: one module index per call (a look-up per layer cost 3/4 of its time), and a
    pruned slot ends at exactly 0 whatever it held; kept slots are untouched, inf and NaN included."""
    from mmprune4u_plugin.core import pruner as pruner_module
    model, pruner = _half_pruned_two_branch()
    weight = model.img_backbone[0].weight
    keep = pruner.mask_of('img_backbone.0.weight')
    pruned_at, kept_at = (~keep).nonzero()[:2], keep.nonzero()[:1]
    with torch.no_grad():
        weight[tuple(pruned_at[0])] = float('inf')
        weight[tuple(pruned_at[1])] = float('nan')
        weight[tuple(kept_at[0])] = float('inf')
    calls = []
    real_index = pruner_module.module_index
    monkeypatch.setattr(pruner_module, 'module_index', lambda m: calls.append(m) or real_index(m))
    pruner.apply()
    assert calls == [model]
    assert weight[tuple(pruned_at[0])] == 0 and weight[tuple(pruned_at[1])] == 0
    assert weight[tuple(kept_at[0])] == float('inf')
    assert int((weight[~keep] != 0).sum()) == 0


def _half_pruned_two_branch() -> tuple[TwoBranchNet, Pruner]:
    model = arange_(TwoBranchNet())
    pruner = Pruner(find_prunable_layers(model, modalities=dict(camera=['img_'], lidar=['pts_'])))
    pruner.prepare(model)
    pruner.set_sparsities({lay.name: 0.5 for lay in pruner.layers})
    return model, pruner


def test_keep_factor_follows_every_change_of_the_mask():
    """The cached uint8 copy is rebuilt after update(), a module load_state_dict (an in-place copy into the buffer)
    and a direct in-place edit; it always equals the bool mask."""
    pm = PruningMask((2, 2))
    assert pm.keep_factor().tolist() == [[1, 1], [1, 1]]
    assert pm.keep_factor() is pm.keep_factor()  # cached while the mask is unchanged
    pm.update(torch.tensor([[True, False], [True, True]]))
    assert pm.keep_factor().tolist() == [[1, 0], [1, 1]]
    other = PruningMask((2, 2))
    other.load_state_dict({'mask': torch.tensor([[False, False], [True, False]])})
    other.keep_factor()
    other.mask[1, 0] = False
    assert other.keep_factor().tolist() == [[0, 0], [0, 0]]
    assert pm.keep_factor().dtype == torch.uint8


def test_zero_pruned_sets_exact_zeros_and_keeps_kept_values_bit_for_bit():
    pm = PruningMask((6,))
    pm.update(torch.tensor([True, False, True, False, True, False]))
    t = torch.tensor([1.5, 2.0, float('inf'), float('nan'), -0.0, -3.0])
    zero_pruned_(t, pm)
    assert t[[1, 3, 5]].tolist() == [0.0, 0.0, 0.0]
    assert t[0] == 1.5 and t[2] == float('inf') and t[4] == 0.0 and str(float(t[4])) == '-0.0'
    finite = torch.tensor([1.0, float('nan'), 2.0, float('-inf'), 3.0, 4.0])  # only the pruned slots non-finite
    assert zero_pruned_(finite, pm).tolist() == [1.0, 0.0, 2.0, 0.0, 3.0, 0.0]


def test_gradient_masks_hold_under_accumulation_and_non_finite_gradients():
    model, pruner = _half_pruned_two_branch()
    w = model.pts_backbone[0].weight
    keep = pruner.mask_of('pts_backbone.0.weight')
    img, pts = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 5)
    model(img, pts).pow(2).mean().backward()
    once = w.grad.clone()
    model(img, pts).pow(2).mean().backward()  # accumulated without zero_grad
    assert torch.equal(w.grad, 2 * once)
    assert int((w.grad[~keep] != 0).sum()) == 0 and int((w.grad[keep] != 0).sum()) > 0
    model.zero_grad()
    model(img, pts * float('inf')).sum().backward()  # a diverged step: NaN everywhere, still 0 where pruned
    assert int((w.grad[~keep] != 0).sum()) == 0 and torch.isnan(w.grad[keep]).all()


def _ddp_rank(rank: int, world: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    # a file store: no TCP port to race for, and no rank hosts what the other still needs at teardown
    dist.init_process_group('gloo', init_method=rendezvous, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        model = arange_(TwoBranchNet())
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
        pruner = Pruner(find_prunable_layers(model))
        pruner.prepare(model)  # after wrapping, as MMPrune4UHook.before_train does
        pruner.set_sparsities({lay.name: 0.5 for lay in pruner.layers})
        gen = torch.Generator().manual_seed(rank)  # each rank its own batch
        wrapped(torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 5, 5, generator=gen)).pow(2).mean().backward()
        torch.save({lay.name: model.get_parameter(lay.name).grad for lay in pruner.layers}, f'{out}_rank{rank}.tmp')
        os.replace(f'{out}_rank{rank}.tmp', f'{out}_rank{rank}.pt')  # whole or absent
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _run_ranks(fn, world: int, tmp_path: Path, out: str, limit: float = 300.0, grace: float = 30.0) -> None:
    """Spawn ``world`` ranks of ``fn``; fail on a rank's error or after ``limit`` s. gloo's teardown can block a rank
    after its work is saved (seen once in four runs of the suite here): once every rank's file is in, a rank still
    alive ``grace`` s later is terminated, since nothing it holds is needed."""
    ctx = mp.start_processes(fn, args=(world, f'file://{tmp_path}/rendezvous', out), nprocs=world, join=False,
                             start_method='spawn')
    start, saved_at = time.monotonic(), None
    while not ctx.join(timeout=1):
        now = time.monotonic()
        if saved_at is None and all(Path(f'{out}_rank{r}.pt').is_file() for r in range(world)):
            saved_at = now
        if (saved_at is not None and now - saved_at > grace) or now - start > limit:
            for proc in ctx.processes:
                if proc.is_alive():
                    proc.kill()
            if saved_at is None:
                pytest.fail(f'the {world} ranks did not finish within {limit:.0f} s')
            return


def test_ddp_reduces_the_masked_gradient(tmp_path):
    """Under DistributedDataParallel the reduced gradient is 0 where pruned and, where kept, the mean of what each
    rank computes alone: the masking runs before DDP copies the gradient into its bucket."""
    out = str(tmp_path / 'grads')
    _run_ranks(_ddp_rank, 2, tmp_path, out)
    reduced = [torch.load(f'{out}_rank{r}.pt') for r in range(2)]
    model = arange_(TwoBranchNet()).double()
    pruner = Pruner(find_prunable_layers(model))
    pruner.prepare(model)
    pruner.set_sparsities({lay.name: 0.5 for lay in pruner.layers})
    alone = []
    for rank in range(2):
        model.zero_grad()
        gen = torch.Generator().manual_seed(rank)
        img, pts = torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 5, 5, generator=gen)
        model(img.double(), pts.double()).pow(2).mean().backward()
        alone.append({lay.name: model.get_parameter(lay.name).grad.clone() for lay in pruner.layers})
    for lay in pruner.layers:
        keep = pruner.mask_of(lay.name)
        expected = (alone[0][lay.name] + alone[1][lay.name]) / 2
        for grads in reduced:
            assert int((grads[lay.name][~keep] != 0).sum()) == 0
            # the reference is float64: BatchNorm's backward cancels terms of the gradient's size, so float32 is off
            # by rounding of that size; a missed average would be off by the whole gradient
            scale = float(expected.abs().max())
            assert float((grads[lay.name].double() - expected).abs().max()) <= 1e-4 * scale, lay.name
