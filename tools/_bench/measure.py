"""In-process measurements: the additivity check and the costs (curve estimators, DP, per-step overhead).

Both start from a Runner built from the seed's pruning config with the dense weights loaded (what tools/prune.py does
before it prunes), so the layers, taps and calibration batches are the hook's own; the batches are checked against
the digest stored in the seed's curve cache, so the curves and the measured distortions see the same samples.
"""
from __future__ import annotations

import contextlib
import random
import statistics
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from .cells import MissingInput
from .plan import Cell
from .stats import pearson, spearman


# ------------------------------------------------------------------------------------------------------ inputs
def _curves_record(results: dict, seed: int) -> dict:
    record = results.get(Cell('curves', seed=seed).id)
    if record is None or record.get('status') != 'done':
        raise MissingInput(f'the curves of seed {seed} are missing or failed')
    return record['result']


def method_allocations(results: dict, seed: int) -> list[dict]:
    """The per-layer allocation of every one-shot cell of this seed (and the seed-free ones)."""
    out = []
    for record in results.values():
        spec = record.get('cell', {})
        if record.get('status') == 'done' and spec.get('kind') == 'oneshot' and spec.get('seed') in (None, seed):
            out.append(dict(method=spec['method'], sparsity=spec['sparsity'],
                            allocation=record['result']['allocation']))
    return sorted(out, key=lambda a: (a['method'], a['sparsity']))


def additivity_inputs(ex, cell: Cell, results: dict) -> dict:
    curves = _curves_record(results, cell.seed)
    return dict(configs={'prune': ex.factory.pruning('rd', ex.plan.sparsities[0], cell.seed)},
                curves_digest=curves['curves_digest'], settings=dict(ex.plan.additivity),
                allocations=method_allocations(results, cell.seed))


def costs_inputs(ex, cell: Cell, results: dict) -> dict:
    curves = _curves_record(results, cell.seed)
    beta = ex.chosen_beta(results)
    s = float(ex.plan.beta.get('sparsity', ex.plan.sparsities[-1]))
    variant = 'lsi' if ex.plan.lsi_loss is not None else 'task'
    return dict(configs={'prune': ex.factory.pruning('rd', ex.plan.sparsities[0], cell.seed),
                         'train': ex.factory.finetune('mmprune4u_local', variant, s, cell.seed, beta=beta)},
                curves_digest=curves['curves_digest'], settings=dict(ex.plan.costs), beta=beta, sparsity=s)


# ------------------------------------------------------------------------------------------------------ helpers
def _loaded(ex, cfg, checkpoint: str, out: Path, name: str):
    """(runner, hook, model, calibration batches) of a Runner with the dense weights loaded."""
    from mmprune4u_plugin.hooks import MMPrune4UHook
    from mmprune4u_plugin.hooks.calibration import collect_batches, unwrap
    runner = ex.build_loaded(cfg, checkpoint, name)
    hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
    model = unwrap(runner.model)
    batches = collect_batches(model, hook._calibration_loader(runner), hook.args['calib_batches'])
    return runner, hook, model, batches


def _check_batches(curves, batches) -> None:
    from mmprune4u_plugin.fingerprint import content_digest
    if curves.source and content_digest(batches) not in curves.source:
        raise RuntimeError('the calibration batches differ from those the curves were measured on')


@contextlib.contextmanager
def pruned(model, layers, allocation: dict) -> Iterator[None]:
    """Magnitude-prune every layer to its allocated sparsity (exact counts, as the hook's masks), then restore."""
    import torch
    from mmprune4u_plugin.core.layers import get_weight
    from mmprune4u_plugin.core.masks import magnitude_mask
    saved = []
    with torch.no_grad():
        for lay in layers:
            w = get_weight(model, lay)
            saved.append((w, w.detach().clone()))
            w.mul_(magnitude_mask(w, float(allocation[lay.name])))
    try:
        yield
    finally:
        with torch.no_grad():
            for w, original in saved:
                w.copy_(original)


def _task_features(model, batches, taps):
    import torch
    from mmprune4u_plugin.core.curves import eval_mode
    from mmprune4u_plugin.core.taps import TapRecorder, run_to_taps
    from mmprune4u_plugin.hooks.calibration import mmdet3d_forward
    labels = {f'task{i}': t for i, t in enumerate(taps)}
    with torch.no_grad(), eval_mode(model), TapRecorder(model, labels, stop_early=True) as rec:
        return [{k: [t.double() for t in v] for k, v in run_to_taps(model, mmdet3d_forward, b, rec).items()}
                for b in batches]


def distortion(dense: list, feats: list) -> float:
    """D = mean over task taps of Σ_b ||f̃_b − f_b||² / Σ_b ||f_b||² (the exact estimator's normalisation)."""
    out = []
    for label in dense[0]:
        num = sum(float((a - b).pow(2).sum()) for d, f in zip(dense, feats) for a, b in zip(f[label], d[label]))
        den = sum(float(b.pow(2).sum()) for d in dense for b in d[label])
        out.append(num / den)
    return float(np.mean(out))


def random_allocations(names: list[str], grid: np.ndarray, n: int, seed: int, lo: float, hi: float) -> list[dict]:
    """``n`` random per-layer allocations on the grid levels: a global level S ~ U(lo, hi) and per-layer spread
    σ ~ U(0.05, 0.3), s_l = the grid level nearest to clip(S + σ z_l) (z_l standard normal)."""
    out = []
    for i in range(n):
        rng = random.Random(f'additivity-{seed}-{i}')
        level, spread = rng.uniform(lo, hi), rng.uniform(0.05, 0.3)
        picks = [min(max(level + spread * rng.gauss(0, 1), 0.0), float(grid[-1])) for _ in names]
        out.append({name: float(grid[int(np.argmin(np.abs(grid - s)))]) for name, s in zip(names, picks)})
    return out


def predicted(curves, allocation: dict) -> float:
    """Σ_l D_l(s_l), linear interpolation between grid levels (exact on the grid)."""
    return float(sum(np.interp(allocation[n], curves.grid, curves.task[i]) for i, n in enumerate(curves.names)))


# ------------------------------------------------------------------------------------------------------ cells
def run_additivity(ex, cell: Cell, out: Path, job: dict) -> dict:
    from mmprune4u_plugin.core.curves import DistortionCurves
    from .execute import isolated
    curves = DistortionCurves.load(_curves_record_path(ex, cell.seed))
    with isolated(out / 'log.txt'):
        runner, hook, model, batches = _loaded(ex, job['configs']['prune'], job['files']['checkpoint'], out,
                                               cell.id)
        _check_batches(curves, batches)
        layers = hook.pruner.layers
        if [lay.name for lay in layers] != list(curves.names):
            raise RuntimeError('the curves were measured for other layers')
        dense = _task_features(model, batches, hook.task_taps)
        settings = job['extra']['settings']
        lo, hi = settings.get('level_range', [0.3, 0.95])
        numel = {lay.name: lay.numel for lay in layers}
        items = [dict(kind='random', allocation=a) for a in random_allocations(
            curves.names, curves.grid, int(settings['random']), cell.seed, lo, hi)]
        items += [dict(kind='method', method=a['method'], sparsity=a['sparsity'], allocation=a['allocation'])
                  for a in job['extra']['allocations']]
        points = []
        for item in items:
            alloc = item.pop('allocation')
            with pruned(model, layers, alloc):
                measured = distortion(dense, _task_features(model, batches, hook.task_taps))
            item.update(global_sparsity=sum(alloc[n] * numel[n] for n in numel) / sum(numel.values()),
                        predicted=predicted(curves, alloc), measured=measured)
            points.append(item)
    summary = {}
    for group, pts in (('all', points), ('random', [p for p in points if p['kind'] == 'random']),
                       ('methods', [p for p in points if p['kind'] == 'method'])):
        if len(pts) >= 2:
            xs, ys = [p['predicted'] for p in pts], [p['measured'] for p in pts]
            summary[group] = dict(n=len(pts), pearson=_finite(pearson(xs, ys)), spearman=_finite(spearman(xs, ys)))
    return dict(points=points, correlation=summary)


def _curves_record_path(ex, seed: int) -> Path:
    path = ex.factory.curve_cache(seed)
    return path.with_name(f'{path.stem}_round1.npz')


def _finite(x: float) -> float | None:
    return x if np.isfinite(x) else None


def run_costs(ex, cell: Cell, out: Path, job: dict) -> dict:
    from .execute import isolated
    settings = job['extra']['settings']
    with isolated(out / 'log.txt'):
        runner, hook, model, batches = _loaded(ex, job['configs']['prune'], job['files']['checkpoint'], out,
                                               f'{cell.id}_curves')
        curves = _estimator_costs(ex, cell, hook, model, batches, settings)
        dp = _dp_costs(ex, cell, hook, job['extra']['beta'])
        del runner, model, batches
        step = _step_costs(ex, job, out, settings)
    return dict(curves=curves, dp=dp, step=step)


def _estimator_costs(ex, cell, hook, model, batches, settings) -> dict:
    """Memoised exact vs plain exact vs fisher, and how close the fisher curves' RD allocation is to the exact one's.

    Memoised and plain exact are timed on the same evenly spaced subset of layers (a full measurement of each would
    cost as much as the seed's whole curves again); plain is then scaled by L / subset (a plain pass is a full
    forward whatever the layer). Fisher is timed on all layers. The exact curves of all layers (and their
    leaf-forward counts) are the seed's own, measured by its curves cell in this run.
    """
    import torch
    from mmprune4u_plugin.core.curves import DistortionCurves, eval_mode, gradients_enabled
    from mmprune4u_plugin.core.estimate_exact import exact_curves
    from mmprune4u_plugin.core.estimate_fisher import fisher_curves
    from mmprune4u_plugin.core.plan import AllocationSpec, allocate_layers
    from mmprune4u_plugin.hooks.calibration import mmdet3d_forward
    layers, grid = hook.pruner.layers, np.asarray(hook.grid, dtype=np.float64)
    exact_c = DistortionCurves.load(_curves_record_path(ex, cell.seed))
    _check_batches(exact_c, batches)
    if list(exact_c.names) != [lay.name for lay in layers]:
        raise RuntimeError('the seed\'s curves were measured for other layers')
    n_sub = max(1, min(int(settings.get('plain_layers', 12)), len(layers)))
    subset = sorted({int(round(i)) for i in np.linspace(0, len(layers) - 1, n_sub)})
    kw = dict(task_taps=hook.task_taps, modality_taps=dict(hook.modality_taps))
    timed = {}
    with eval_mode(model), torch.no_grad():
        for name, memoise in (('exact_memo', True), ('exact_plain', False)):
            start = time.perf_counter()
            task, _, stats = exact_curves(model, [layers[i] for i in subset], grid, batches, mmdet3d_forward,
                                          memoise=memoise, **kw)
            timed[name] = (time.perf_counter() - start, task, stats)
    if not np.allclose(timed['exact_plain'][1], timed['exact_memo'][1], rtol=1e-5, atol=1e-8):
        raise RuntimeError('memoised and plain exact curves differ')
    with eval_mode(model), gradients_enabled(model, layers):
        start = time.perf_counter()
        fisher, fisher_stats = fisher_curves(model, layers, grid, batches, mmdet3d_forward, task_taps=hook.task_taps,
                                             num_probes=int(settings.get('probes', 8)))
        t_fisher = time.perf_counter() - start
    t_memo, t_plain_sub = timed['exact_memo'][0], timed['exact_plain'][0]
    t_plain = t_plain_sub * len(layers) / len(subset)
    fisher_c = DistortionCurves(list(exact_c.names), list(exact_c.modalities), list(exact_c.numels), grid, fisher,
                                np.zeros_like(fisher))
    numel = np.array([lay.numel for lay in layers], dtype=np.float64)
    agreement = []
    for s in ex.plan.sparsities:
        a = allocate_layers(layers, AllocationSpec(s, 'rd'), curves=exact_c)
        b = allocate_layers(layers, AllocationSpec(s, 'rd'), curves=fisher_c)
        diff = np.array([abs(a[lay.name] - b[lay.name]) for lay in layers])
        agreement.append(dict(sparsity=s, mean_abs_diff=float((diff * numel).sum() / numel.sum()),
                              exact_cost_ratio=predicted(exact_c, b) / max(predicted(exact_c, a), 1e-300)))
    cols = grid > 0
    full = exact_c.stats
    return dict(layers=len(layers), levels=int(cols.sum()), batches=len(batches), layers_timed=len(subset),
                seconds=dict(exact_memo_subset=t_memo, exact_plain_subset=t_plain_sub, exact_plain=t_plain,
                             fisher=t_fisher, seed_curves=full.get('seconds')),
                leaf_forwards=dict(exact_memo_subset=timed['exact_memo'][2]['leaf_forwards'],
                                   exact_plain_subset=timed['exact_plain'][2]['leaf_forwards'],
                                   exact_memo=full.get('leaf_forwards'), exact_plain=full.get('plain_leaf_forwards')),
                fisher_backward_passes=fisher_stats.get('backward_passes'),
                speedup=dict(memo_vs_plain=t_plain_sub / t_memo, fisher_vs_plain=t_plain / t_fisher,
                             memo_vs_plain_leaf_forwards=(full['plain_leaf_forwards'] / max(full['leaf_forwards'], 1)
                                                          if full.get('leaf_forwards') else None)),
                fisher_vs_exact=dict(spearman_all=_finite(spearman(fisher[:, cols].ravel(),
                                                                   exact_c.task[:, cols].ravel())),
                                     allocations=agreement))


def _dp_costs(ex, cell, hook, beta: float) -> dict:
    """Wall time of the MMPrune4U allocation (DP on D + βR) from the seed's cached curves, best of 3."""
    from mmprune4u_plugin.core.curves import DistortionCurves
    from mmprune4u_plugin.core.plan import AllocationSpec, allocate_layers
    curves = DistortionCurves.load(_curves_record_path(ex, cell.seed))
    rows = []
    for s in ex.plan.sparsities:
        spec = AllocationSpec(s, 'mmprune4u', beta=beta, num_bins=hook.spec.num_bins)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            allocate_layers(hook.pruner.layers, spec, curves=curves)
            times.append(time.perf_counter() - start)
        rows.append(dict(sparsity=s, seconds=min(times)))
    return dict(layers=len(curves.names), levels=len(curves.grid), bins=hook.spec.num_bins, rows=rows)


def _step_costs(ex, job: dict, out: Path, settings: dict) -> dict:
    """Seconds per training step, interleaved round-robin on one model and the same pre-fetched batches:
    plain (no gradient masks, no re-application, no LSI), + masks (gradient masking and re-application after the
    step), + masks + LSI loss. Data loading is excluded, so the overheads are relative to the compute alone."""
    from mmprune4u_plugin.hooks import MMPrune4UHook
    from mmprune4u_plugin.hooks.calibration import unwrap
    from mmprune4u_plugin.hooks.lsi_finetune import LSIFinetuner
    cfg = job['configs']['train']
    runner = ex.build_loaded(cfg, job['files']['checkpoint'], f'{out.name}_step')
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)  # built by train() otherwise
    hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
    hook.before_train(runner)
    model, wrapper = unwrap(runner.model), runner.optim_wrapper
    fin = hook.finetuner
    loader = iter(runner.build_dataloader(runner._train_dataloader, seed=runner.seed))
    data = [next(loader) for _ in range(min(4, int(settings.get('steps', 10))))]
    modes = ['plain', 'masks'] + (['masks+lsi'] if fin is not None else [])
    if fin is not None:
        fin.remove()
    active: list = []

    def enter(mode: str) -> None:
        if mode == 'plain':
            hook.pruner.remove_hooks()
        else:
            hook.pruner.prepare(model)
        if mode == 'masks+lsi':
            active.append(LSIFinetuner(model, fin.taps, fin.loss_fn, reference=fin.reference, teacher=fin.teacher,
                                       dense_stats=fin.dense_stats))

    def leave(mode: str) -> None:
        while active:
            active.pop().remove()
    times, apply_times = round_robin_step_seconds(
        model, wrapper, data, modes, enter=enter, leave=leave,
        after_step={m: hook.pruner.apply for m in modes if m != 'plain'},
        warmup=int(settings.get('warmup', 2)), steps=int(settings.get('steps', 10)))
    med = {m: statistics.median(v) for m, v in times.items()}
    result = dict(seconds_per_step=med, steps=int(settings.get('steps', 10)),
                  mask_apply_seconds=statistics.median(apply_times),
                  mask_overhead=med['masks'] / med['plain'] - 1)
    if 'masks+lsi' in med:
        result['lsi_overhead'] = (med['masks+lsi'] - med['masks']) / med['plain']
        result['lsi_reference'] = fin.reference
    return result


def round_robin_step_seconds(model, wrapper, batches: list, modes: list[str], *, enter, leave,
                             after_step: dict, warmup: int, steps: int) -> tuple[dict[str, list[float]], list[float]]:
    """Seconds of ``model.train_step`` per mode, the modes interleaved step by step on the same pre-fetched
    ``batches`` (so a machine's load drifts alike over all of them): ``enter(mode)`` / ``leave(mode)`` around each
    step, ``after_step[mode]()`` (e.g. the masks' re-application) timed inside the step and on its own. Returns
    (per mode the ``steps`` times after ``warmup`` rounds, every ``after_step`` time)."""
    times: dict[str, list[float]] = {m: [] for m in modes}
    extra: list[float] = []
    model.train()
    for r in range(warmup + steps):
        for mode in modes:
            enter(mode)
            start = time.perf_counter()
            model.train_step(batches[r % len(batches)], wrapper)
            if mode in after_step:
                t0 = time.perf_counter()
                after_step[mode]()
                extra.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - start
            leave(mode)
            if r >= warmup:
                times[mode].append(elapsed)
    return times, extra
