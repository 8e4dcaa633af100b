"""Sharded curve measurement and world-free calibration (hooks/distributed.py): the split, the merge, 2 gloo ranks."""
import socket
from unittest import mock

import numpy as np
import pytest
import torch

pytest.importorskip('mmengine')
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from helpers import TwoBranchNet, forward_two_branch, two_branch_batches  # noqa: E402
from mmprune4u_plugin.core.curves import measure_curves  # noqa: E402
from mmprune4u_plugin.core.layers import find_prunable_layers  # noqa: E402
from mmprune4u_plugin.core.taps import Tap  # noqa: E402
from mmprune4u_plugin.hooks import distributed as ddp  # noqa: E402

GRID = (0.0, 0.3, 0.6, 0.9)
TASK = (Tap('bbox_head', 'input'), Tap('bbox_head', 'output'))
MODS = dict(camera=Tap('img_backbone'), lidar=Tap('pts_backbone', channel_dim=-1))
GROUPS = dict(camera=['img_'], lidar=['pts_'], fusion=['fusion', 'bbox'])


def _setup():
    torch.manual_seed(0)
    model = TwoBranchNet()
    return model, find_prunable_layers(model, modalities=GROUPS), two_branch_batches(2)


def _measurer(model, batches, estimator):
    def measure(share):
        mods = MODS if estimator == 'exact' else None
        return measure_curves(model, share, batches, forward_two_branch, task_taps=TASK, modality_taps=mods,
                              grid=GRID, estimator=estimator, num_probes=4)
    return measure


# ------------------------------------------------------------------------------------------------------- the split
@pytest.mark.parametrize('costs, world', [([5, 1, 1, 1, 1, 1], 2), ([3.0] * 7, 3), (list(range(1, 20)), 4),
                                          ([1, 2], 4), ([], 2), ([0, 0, 7], 2)])
def test_shard_layers_covers_balances_and_is_deterministic(costs, world):
    shares = ddp.shard_layers(costs, world)
    assert len(shares) == world
    assert sorted(i for s in shares for i in s) == list(range(len(costs)))  # every layer exactly once
    assert all(s == sorted(s) for s in shares)  # layer order kept within a share
    loads = [sum(costs[i] for i in s) for s in shares]
    # list scheduling bound: no rank carries more than an even share plus one layer
    assert max(loads) <= sum(costs) / world + max(costs, default=0) + 1e-9
    assert ddp.shard_layers(list(costs), world) == shares


def test_shard_layers_examples():
    assert ddp.shard_layers([5, 1, 1, 1, 1, 1], 2) == [[0], [1, 2, 3, 4, 5]]
    assert ddp.shard_layers([3.0] * 7, 3) == [[0, 3, 6], [1, 4], [2, 5]]  # equal costs: round-robin
    assert ddp.shard_layers([1, 2, 3], 1) == [[0, 1, 2]]


def test_layer_costs_follow_compute_and_pass_order():
    model, layers, batches = _setup()
    names = [lay.name for lay in layers]
    exact = ddp.layer_costs(model, layers, batches[0], forward_two_branch)
    fisher = ddp.layer_costs(model, layers, batches[0], forward_two_branch, estimator='fisher')
    assert exact == ddp.layer_costs(model, layers, batches[0], forward_two_branch)  # deterministic
    for costs in (exact, fisher):
        assert all(c >= 1 for c in costs) and np.mean(costs) == pytest.approx(2.0)  # 1 + c_l / mean(c)
    by = dict(zip(names, exact))
    # exact replays everything after a layer: the first camera conv costs more than the last head conv
    assert by['img_backbone.0.weight'] > by['bbox_head.2.weight']
    assert exact != fisher
    assert model.training  # the pass is in eval mode, the mode is restored


@pytest.mark.parametrize('costs, world, message', [([1], 0, 'world_size: 0'), ([1, -1], 2, 'costs'),
                                                   ([float('nan')], 2, 'costs')])
def test_shard_layers_bad_args(costs, world, message):
    with pytest.raises(ValueError, match=message):
        ddp.shard_layers(costs, world)


# ------------------------------------------------------------------------------------------------------- the merge
def test_merge_curves_puts_rows_back_and_combines_stats():
    model, layers, batches = _setup()
    measure = _measurer(model, batches, 'exact')
    whole = measure(layers)
    shares = ddp.shard_layers(ddp.layer_costs(model, layers, batches[0], forward_two_branch), 3)
    parts = [(s, measure([layers[i] for i in s]) if s else None, (0.5, 0.25)) for s in shares]
    merged = ddp.merge_curves(layers, parts)
    assert merged.names == whole.names and merged.numels == whole.numels and merged.modalities == whole.modalities
    np.testing.assert_allclose(merged.task, whole.task, rtol=1e-12, atol=0)
    np.testing.assert_allclose(merged.local, whole.local, rtol=1e-12, atol=0)
    for m in whole.downstream:
        np.testing.assert_allclose(merged.downstream[m], whole.downstream[m], rtol=1e-12, atol=0)
    for key in ddp.SPLIT_STATS:  # split work adds up to the single-process count
        assert merged.stats[key] == whole.stats[key]
    assert merged.stats['ranks'] == 3 and merged.stats['rank_seconds'] == [0.5] * 3
    assert merged.stats['rank_cpu_seconds'] == [0.25] * 3
    with pytest.raises(RuntimeError, match='each of 0..'):
        ddp.merge_curves(layers, parts[:1])


def test_measure_sharded_refuses_ranks_with_other_inputs():
    layers = _setup()[1]
    with pytest.raises(RuntimeError, match='different calibration batches or weights'):
        ddp.measure_sharded(mock.Mock(), layers, gather=lambda obj: [obj, 'b'], world=(0, 2))


def test_tensors_digest_sees_every_tensor_and_skips_other_leaves():
    batches = two_branch_batches(2)
    key = ddp.tensors_digest(batches)
    assert key == ddp.tensors_digest(two_branch_batches(2))
    assert key != ddp.tensors_digest(batches[:1])
    with_meta = [ddp.tensors_digest(dict(a=torch.ones(2), meta=object())) for _ in range(2)]
    assert with_meta[0] == with_meta[1]  # reprs (addresses) are not hashed
    assert ddp.tensors_digest(torch.ones(2)) != ddp.tensors_digest(torch.ones(2, dtype=torch.float64))
    batches[1]['pts'][0, 0, 0] += 1e-6
    assert key != ddp.tensors_digest(batches)


def test_measure_sharded_raises_on_every_rank_when_one_fails():
    layers = _setup()[1]
    # this process is rank 1 and measures fine; rank 0 failed: the inputs check, then the parts with rank 0's error
    failed = ([0], None, (1.0, 1.0), "ValueError('tap is all zeros')")
    replies = iter([lambda obj: [obj, obj], lambda obj: [failed, obj]])
    with pytest.raises(RuntimeError, match=r"failed on rank 0: ValueError\('tap is all zeros'\)"):
        ddp.measure_sharded(mock.Mock(), layers, gather=lambda obj: next(replies)(obj), world=(1, 2))
    with pytest.raises(ZeroDivisionError):  # the failing rank raises its own error after the gather
        ddp.measure_sharded(mock.Mock(side_effect=ZeroDivisionError), layers, gather=lambda obj: [obj, obj],
                            world=(0, 2))


# ------------------------------------------------------------------------------------------------ 2 gloo ranks
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _rank_main(rank, world, port, estimator, out):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world)
    try:
        model, layers, batches = _setup()
        if rank == 1:  # BN statistics drift apart under DDP (broadcast_buffers=False): rank 0's are measured
            model.norm.running_mean.add_(1.0)
        ddp.sync_buffers(model)
        curves = ddp.measure_sharded(_measurer(model, batches, estimator), layers,
                                     inputs=(batches, model.state_dict()))
        curves.save(f'{out}_rank{rank}.npz')
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize('estimator', ['exact', 'fisher'])
def test_two_gloo_ranks_equal_single_process(tmp_path, estimator):
    from mmprune4u_plugin.core.curves import DistortionCurves
    model, layers, batches = _setup()
    torch.set_num_threads(1)
    single = _measurer(model, batches, estimator)(layers)
    out = str(tmp_path / 'curves')
    mp.spawn(_rank_main, args=(2, _free_port(), estimator, out), nprocs=2, join=True)
    for rank in (0, 1):
        sharded = DistortionCurves.load(f'{out}_rank{rank}.npz')
        assert sharded.names == single.names
        np.testing.assert_allclose(sharded.task, single.task, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(sharded.local, single.local, rtol=1e-12, atol=1e-15)
        assert sorted(sharded.downstream) == sorted(single.downstream)
        for m in single.downstream:
            np.testing.assert_allclose(sharded.downstream[m], single.downstream[m], rtol=1e-12, atol=1e-15)
        assert sharded.stats['ranks'] == 2 and len(sharded.stats['rank_seconds']) == 2
    if estimator == 'fisher':  # probes are not split: each rank runs as many backward passes as one process
        assert sharded.stats['backward_passes'] == single.stats['backward_passes']


# ------------------------------------------------------------------------------------------- calibration loader
class _Indices(torch.utils.data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, index):
        return index


@pytest.mark.parametrize('num_workers', [0, 2])
def test_world_free_loader_ignores_rank(num_workers):
    from mmengine.runner import Runner
    runner = mock.Mock(seed=3, build_dataloader=Runner.build_dataloader)
    cfg = dict(dataset=_Indices(), batch_size=2, num_workers=num_workers, persistent_workers=False,
               sampler=dict(type='DefaultSampler', shuffle=False))
    # rank 1 of 2, as mmengine sees it: DefaultSampler would give it indices 1, 3, 5
    with mock.patch('mmengine.dataset.sampler.get_dist_info', return_value=(1, 2)), \
            mock.patch('mmengine.runner.runner.get_rank', return_value=1):
        sharded = [list(b) for b in Runner.build_dataloader(cfg, seed=3)]
        loader = ddp.world_free_loader(runner, cfg)
        batches = [list(b) for b in loader]
    assert sharded == [[1, 3], [5]]
    assert batches == [[0, 1], [2, 3], [4, 5]]
    if num_workers:
        assert loader.worker_init_fn.keywords['rank'] == 0
