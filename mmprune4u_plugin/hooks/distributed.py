"""DDP for MMPrune4UHook: every rank calibrates on the single-process batches, and the curves are measured sharded.

Under DDP, rank 0 used to measure every curve while the other ranks waited in a broadcast: a long exact measurement
could pass the process-group timeout, and a forward that communicates (SyncBN in train mode) would hang. Now:

1. :func:`world_free_loader`: the calibration loader ignores the distributed world (a ``SequentialSampler`` instead
   of mmengine's rank-sharding ``DefaultSampler``, and rank-0 worker seeds), so every rank holds the first N batches
   of the unshuffled dataset, exactly those of a single-process run.
2. :func:`measure_sharded`: the prunable layers are split across ranks (:func:`shard_layers`, balanced by cost and
   deterministic); each rank measures its share, the shares are all-gathered and the rows put back in layer order.
   A layer's row does not depend on which other layers are measured with it, so the sharded curves equal the
   single-process ones. Every rank runs the same collectives (a rank with no layer still joins the gather; a rank
   whose measurement fails sends its error, and every rank raises), and the ranks first check that they measure the
   same inputs (batches, weights and buffers: :func:`sync_buffers` gives every rank rank 0's BN statistics).

Estimators: ``exact`` repeats the dense reference pass on every rank (one pass per batch) and splits the L*K pruned
passes. ``fisher`` gets every layer's gradient from the same backward passes, so its probes are not split: every
rank runs all of them (as many backward passes as one process, the same random probes) and keeps the rows of its
layers; what is split is the per-layer work (cumulative sums, the layer-local LSI), and a rank whose layers all sit
near the taps backpropagates less far. So ``fisher`` gains little from more ranks; it is cheap anyway.
In the combined ``stats``, counts of split work (:data:`SPLIT_STATS`) are summed over ranks, any other count (work
every rank repeats, e.g. ``backward_passes``) is one rank's; ``rank_seconds`` and ``rank_cpu_seconds`` list each
rank's measuring wall and CPU time.
"""
from __future__ import annotations

import hashlib
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from mmengine.dataset import worker_init_fn as default_worker_init_fn
from mmengine.dist import all_gather_object, broadcast, get_dist_info
from torch.utils.data import SequentialSampler

from ..core.curves import DistortionCurves
from ..core.layers import PrunableLayer, module_by_name
from ..core.taps import tensors_in

SPLIT_STATS = frozenset({'leaf_forwards', 'plain_leaf_forwards', 'memo_calls_served'})


def world_free_loader(runner, cfg: dict):
    """``runner.build_dataloader(cfg)`` whose batches do not depend on the rank or the world size.

    ``cfg['dataset']`` must be a built dataset. Its sampler is replaced by a ``SequentialSampler`` (indices 0, 1, ...),
    and workers are seeded as on rank 0 (mmengine seeds them with ``num_workers * rank + worker_id + seed``).
    """
    loader_cfg = dict(cfg, sampler=SequentialSampler(cfg['dataset']))
    loader = runner.build_dataloader(loader_cfg, seed=runner.seed)
    if 'worker_init_fn' not in cfg and runner.seed is not None and loader.num_workers > 0:
        quiet = cfg.get('disable_subprocess_warning', False)
        loader.worker_init_fn = partial(default_worker_init_fn, num_workers=loader.num_workers, rank=0,
                                        seed=runner.seed, disable_subprocess_warning=quiet)
    return loader


def shard_layers(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """Split layer indices over ``world_size`` ranks, balancing the summed cost (longest-processing-time greedy).

    Layers are taken from the most to the least costly (ties: lower index first), each to the rank with the least
    cost so far (ties: lower rank). Deterministic: every rank computes the same split. The largest load is at most
    4/3 of the optimum (Graham's bound). Each share is returned in layer order.
    """
    if world_size < 1:
        raise ValueError(f'`world_size` must be >= 1, but got world_size: {world_size}')
    if any(not np.isfinite(c) or c < 0 for c in costs):
        raise ValueError(f'`costs` must be finite and >= 0, but got costs: {list(costs)[:8]}')
    loads = [0.0] * world_size
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(costs)), key=lambda j: (-float(costs[j]), j)):
        r = min(range(world_size), key=lambda q: (loads[q], q))
        loads[r] += float(costs[i])
        shares[r].append(i)
    return [sorted(s) for s in shares]


def layer_costs(model: torch.nn.Module, layers: Sequence[PrunableLayer], batch: Any,
                forward_fn: Callable[[torch.nn.Module, Any], Any], *, estimator: str = 'exact') -> list[float]:
    """Estimated cost of measuring each layer's curves, from one dense eval-mode pass on ``batch``.

    cost_l = 1 + c_l / mean(c): one unit for what every layer pays per level whatever its size (tap captures,
    distortion sums, Python), plus its compute relative to the mean. With a_l = the multiply-adds of layer l in the
    pass (output elements * n_l / output channels): ``exact`` replays the network from l to the taps at every level,
    c_l = a_l + the a_j of the layers that run after l; ``fisher`` does not split its backward passes, c_l = a_l.
    Deterministic: every rank gets the same costs from the same batch and weights. (PointPillars tiny, 13 layers,
    exact: predicted per-layer costs 1.05..2.7 against measured 1.2..2.4 s per layer past a fixed 0.8 s.)
    """
    macs = dict.fromkeys(range(len(layers)), 0.0)
    order: list[int] = []
    handles = []
    for li, lay in enumerate(layers):
        def hook(mod, args, output, _li=li, _lay=lay):
            out = (tensors_in(output) or [torch.empty(0)])[0]
            if -out.dim() <= _lay.channel_dim < out.dim():
                macs[_li] += out.numel() * _lay.numel / max(out.shape[_lay.channel_dim], 1)
            if _li not in order:
                order.append(_li)
        handles.append(module_by_name(model, lay.runner).register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            forward_fn(model, batch)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    after = {li: sum(macs[j] for j in order[pos + 1:]) for pos, li in enumerate(order)}
    compute = [macs[i] + (after.get(i, 0.0) if estimator == 'exact' else 0.0) for i in range(len(layers))]
    mean = float(np.mean(compute)) if compute else 0.0
    return [1.0 + (c / mean if mean > 0 else 0.0) for c in compute]


def tensors_digest(*objs: Any) -> str:
    """SHA-1 of every tensor in ``objs`` (nested lists / tuples / dicts; dtype, shape and bytes, in a fixed order).
    Other leaves are skipped, so no ``repr`` (which may hold an address) can make equal contents differ."""
    sha = hashlib.sha1()

    def visit(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            sha.update(f'{t.dtype}:{tuple(t.shape)}'.encode())
            t = t.reshape(-1)  # a 0-d tensor (BN's num_batches_tracked) cannot be viewed as bytes
            if t.numel():
                sha.update((t.to(torch.uint8) if t.dtype == torch.bool else t.view(torch.uint8)).numpy().tobytes())
        elif isinstance(obj, (list, tuple)):
            sha.update(f'[{len(obj)}'.encode())
            for item in obj:
                visit(item)
        elif isinstance(obj, dict):
            for key in obj:
                sha.update(f'{key}='.encode())
                visit(obj[key])
        elif hasattr(obj, 'features') and hasattr(obj, 'indices'):  # spconv SparseConvTensor
            visit([obj.features, obj.indices])

    for obj in objs:
        visit(obj)
    return sha.hexdigest()


def sync_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BN running statistics) to every rank, in place; nothing outside DDP.

    The Runner wraps with ``broadcast_buffers=False``, so after training steps each rank's running statistics differ
    while the weights agree. Eval-mode curves read them, so every rank measures rank 0's model, as rank 0 alone did.
    """
    if get_dist_info()[1] > 1:
        for buf in model.buffers():
            broadcast(buf, src=0)


def every_rank(flag: bool) -> bool:
    """True when ``flag`` is true on every rank (one all-gather; just ``flag`` outside DDP)."""
    return all(all_gather_object(bool(flag))) if get_dist_info()[1] > 1 else bool(flag)


def merge_curves(layers: Sequence[PrunableLayer],
                 parts: Sequence[tuple[list[int], DistortionCurves | None, tuple[float, float]]]) -> DistortionCurves:
    """Put the ranks' rows back in the order of ``layers``; ``parts`` = (layer indices, curves, (wall, CPU)
    seconds) per rank."""
    measured = [(idx, c) for idx, c, _ in parts if idx]
    covered = sorted(i for idx, _ in measured for i in idx)
    if covered != list(range(len(layers))):
        raise RuntimeError(f'the ranks measured layers {covered}, expected each of 0..{len(layers) - 1} once')
    first = measured[0][1]
    task, local = np.zeros((len(layers), len(first.grid))), np.zeros((len(layers), len(first.grid)))
    down = {m: np.zeros_like(task) for m in first.downstream}
    for idx, c in measured:
        if c.names != [layers[i].name for i in idx] or not np.array_equal(c.grid, first.grid):
            raise RuntimeError('a rank measured other layers or another grid than its share')
        task[idx], local[idx] = c.task, c.local
        for m in down:
            down[m][idx] = c.downstream[m]
    stats: dict[str, Any] = {}
    for _, c in measured:
        for key, value in c.stats.items():
            if key in SPLIT_STATS:
                stats[key] = stats.get(key, 0) + value
            else:
                stats.setdefault(key, value)
    stats['ranks'] = len(parts)
    stats['rank_seconds'] = [round(float(sec[0]), 3) for _, _, sec in parts]
    stats['rank_cpu_seconds'] = [round(float(sec[1]), 3) for _, _, sec in parts]
    return DistortionCurves([lay.name for lay in layers], [lay.modality for lay in layers],
                            [lay.numel for lay in layers], first.grid, task, local, down, first.estimator, stats,
                            first.source)


def measure_sharded(measure: Callable[[list[PrunableLayer]], DistortionCurves], layers: Sequence[PrunableLayer], *,
                    inputs: Sequence[Any] = (), costs: Callable[[], Sequence[float]] | None = None,
                    gather: Callable[[Any], list] = all_gather_object,
                    world: tuple[int, int] | None = None) -> DistortionCurves:
    """Curves of ``layers``, each rank calling ``measure`` on its share (:func:`shard_layers`), then all-gathered.

    Args:
        measure (callable): Measures the curves of a list of layers (e.g. ``measure_curves`` with the batches bound).
        layers (Sequence[PrunableLayer]): All prunable layers, in the same order on every rank.
        inputs (Sequence): What the measurement reads (calibration batches, ``model.state_dict()``): their tensors
            must be equal on every rank (:func:`tensors_digest`, compared before measuring). Defaults to ().
        costs (callable, optional): Returns each layer's cost for :func:`shard_layers` (e.g. :func:`layer_costs`),
            called under DDP only. Defaults to the layers' numbers of weights.
        gather (callable): ``all_gather_object``. Defaults to mmengine's.
        world (tuple, optional): (rank, world_size). Defaults to mmengine's ``get_dist_info()``.

    Returns:
        DistortionCurves: rows in the order of ``layers``; ``stats['seconds']`` is this rank's wall time (checks,
        measuring and gathering), ``stats['rank_seconds']`` / ``stats['rank_cpu_seconds']`` each rank's measuring
        wall / CPU time (CPU time does not count waiting for a shared core).
    """
    start, cpu = time.perf_counter(), time.process_time()
    rank, world_size = get_dist_info() if world is None else world
    if world_size == 1:
        curves = measure(list(layers))
        seconds = round(time.perf_counter() - start, 3)
        curves.stats = {**curves.stats, 'ranks': 1, 'rank_seconds': [seconds],
                        'rank_cpu_seconds': [round(time.process_time() - cpu, 3)], 'seconds': seconds}
        return curves
    keys = gather(tensors_digest(*inputs))
    if len(set(keys)) != 1:
        raise RuntimeError('DDP ranks hold different calibration batches or weights, so sharded curves would not '
                           f'fit together: inputs per rank {[k[:12] for k in keys]}')
    share = shard_layers([lay.numel + 1.0 for lay in layers] if costs is None else costs(), world_size)[rank]
    own, own_cpu = time.perf_counter(), time.process_time()
    part, error = None, None
    try:
        part = measure([layers[i] for i in share]) if share else None
    except Exception as exc:  # the other ranks are already waiting in the gather: tell them, then raise everywhere
        error = exc
    parts = gather((share, part, (time.perf_counter() - own, time.process_time() - own_cpu),
                    None if error is None else repr(error)))
    if error is not None:
        raise error
    for r, (*_, message) in enumerate(parts):
        if message is not None:
            raise RuntimeError(f'measuring the curves failed on rank {r}: {message}')
    curves = merge_curves(layers, [p[:3] for p in parts])
    curves.stats['seconds'] = round(time.perf_counter() - start, 3)
    return curves


def write_evidence(out: Path, rank: int, **digests: str) -> None:
    """``out/<name>_rank<rank>.txt`` for each digest (e.g. masks, calibration batches): equal files, equal state."""
    out.mkdir(parents=True, exist_ok=True)
    for name, value in digests.items():
        (out / f'{name}_rank{rank}.txt').write_text(value + '\n')
