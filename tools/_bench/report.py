"""From the cells' results to the figures: tables (mean ± std over seeds), the β choice, the verdicts.

Pure data in, plain data out (no OpenMMLab import): :func:`figures` is what the json's ``figures`` holds and what
:mod:`markdown` and :mod:`plots` render, so ``tools/benchmark.py --report-only`` rebuilds the docs from the json.
Every figure is the plan's primary or secondary metric (``Plan.metrics``: NDS / mAP, mIoU / acc ...), stored under
that name in the rows; ``figures['metrics']`` says which they are.
"""
from __future__ import annotations

from typing import Any

from .metrics import DEFAULT_METRICS
from .plan import BASELINES, METHODS, VARIANTS, Cell, Plan, dense_curve_iters
from .stats import summarize

MODALITY_ORDER = ('camera', 'lidar', 'fusion')


def done(cells: dict[str, dict], cell: Cell) -> dict | None:
    record = cells.get(cell.id)
    return record['result'] if record and record.get('status') == 'done' else None


def choose_beta(cells: dict[str, dict], plan: Plan) -> tuple[float, list[str]]:
    """β with the best mean val primary metric (``plan.primary``) over seeds in the sweep; ties go to the plan's
    default β, then to the smallest. Returns (β, ids of missing sweep cells)."""
    means, missing = {}, []
    for beta in plan.beta['values']:
        values = []
        for seed in plan.seeds:
            cell = beta_cell(plan, float(beta), seed)
            result = done(cells, cell)
            if result is None:
                missing.append(cell.id)
            else:
                values.append(plan.metric(result['metrics'], plan.primary))
        if values:
            means[float(beta)] = summarize(values).mean
    if missing or not means:
        return float(plan.beta['default']), missing
    best = max(means.values())
    tied = [b for b, m in means.items() if m >= best - 1e-12]
    default = float(plan.beta['default'])
    return (default if default in tied else min(tied)), []


def beta_cell(plan: Plan, beta: float, seed: int) -> Cell:
    return Cell('beta', method='rd' if beta == 0 else 'mmprune4u_local', beta=beta,
                sparsity=float(plan.beta['sparsity']), seed=seed, split='val')


def _row(results: list[dict], label: str, plan: Plan, **extra: Any) -> dict:
    """Mean ± std of the plan's two metrics, the global sparsity and each modality's sparsity over the results
    (seeds)."""
    row = dict(label=label, n=len(results), **extra)
    for name in (plan.primary, plan.secondary):
        values = [plan.metric(r['metrics'], name) for r in results]
        if values and all(v is not None for v in values):
            s = summarize(values)
            row[name] = dict(mean=s.mean, std=s.std, values=values)  # values: in the order of ``seeds``
    if results:
        row['sparsity'] = summarize([r['sparsity'] for r in results]).mean
        mods = [m for m in results[0].get('by_modality', {})]
        row['modalities'] = {m: summarize([r['by_modality'][m] for r in results]).mean for m in mods}
    return row


def _seeds_for(plan: Plan, method: str, kind: str) -> list:
    return plan.seeds if kind == 'finetune' or METHODS[method].needs_curves else [None]


def table(cells: dict, plan: Plan, kind: str, sparsity: float) -> list[dict]:
    """One row per method (and finetuning variant) at one sparsity, on the test split."""
    rows = []
    if kind == 'oneshot':
        entries = [(m, None) for m in plan.methods]
    else:
        entries = [(m, v) for m, v in plan.finetune_rows() if m != 'dense']
        dense = [done(cells, Cell('finetune', method='dense', variant='task', seed=s, split='test'))
                 for s in plan.seeds]
        if ('dense', 'task') in plan.finetune_rows():
            rows.append(_row([r for r in dense if r], METHODS['dense'].label, plan, method='dense', variant='task',
                             missing=sum(r is None for r in dense),
                             seeds=[s for s, r in zip(plan.seeds, dense) if r]))
    for method, variant in entries:
        seeds = _seeds_for(plan, method, kind)
        found = [done(cells, Cell(kind, method=method, variant=variant, sparsity=float(sparsity), seed=seed,
                                  split='test')) for seed in seeds]
        label = METHODS[method].label + ('' if variant is None else f', {VARIANTS[variant]}')
        rows.append(_row([r for r in found if r], label, plan, method=method, variant=variant,
                         missing=sum(r is None for r in found),
                         seed_free=kind == 'oneshot' and not METHODS[method].needs_curves,
                         seeds=[s for s, r in zip(seeds, found) if r]))
    return rows


def verdicts(rows: list[dict], *, metric: str = 'NDS', baselines: tuple[str, ...] = BASELINES) -> list[dict]:
    """For each MMPrune4U row: the best row of ``baselines`` by mean ``metric``, the difference, and whether it is a
    win (higher mean), and whether the gap exceeds the larger of the two standard deviations (None when a row has a
    single seed, so no spread was measured; a seed-free row's zero spread is real)."""
    base = [r for r in rows if r.get('method') in baselines and r.get(metric)]
    out = []
    if not base:
        return out
    best = max(base, key=lambda r: r[metric]['mean'])
    for r in rows:
        if str(r.get('method', '')).startswith('mmprune4u') and r.get(metric):
            gap = r[metric]['mean'] - best[metric]['mean']
            noise = max(r[metric]['std'], best[metric]['std'])
            single = any(x['n'] < 2 and not x.get('seed_free') for x in (r, best))
            out.append(dict(method=r['label'], best_baseline=best['label'], gap=gap, wins=gap > 0,
                            beyond_std=None if single else abs(gap) > noise, paired=paired(r, best, metric)))
    return out


def paired(row: dict, other: dict, metric: str) -> dict | None:
    """Per-seed differences ``row - other`` on the seeds both rows ran (a seed fixes the calibration samples and the
    finetuning data order, so a pair differs in the method alone): the differences and how many are wins. None
    unless both rows have per-seed values on at least two common seeds (a seed-free row has none)."""
    a, b = row.get(metric) or {}, other.get(metric) or {}
    if 'values' not in a or 'values' not in b or row.get('seeds') is None or other.get('seeds') is None:
        return None
    by_seed = dict(zip(other['seeds'], b['values']))
    pairs = [(seed, v - by_seed[seed]) for seed, v in zip(row['seeds'], a['values']) if seed in by_seed]
    if len(pairs) < 2:
        return None
    return dict(seeds=[seed for seed, _ in pairs], diffs=[d for _, d in pairs], wins=sum(d > 0 for _, d in pairs))


def dense_figures(cells: dict, plan: Plan) -> dict:
    """The val curve over training (the primary and secondary metric per checkpoint), the dense model on val and
    test, and whether the primary metric's last gain is under ``dense.plateau_tol``."""
    curve = []
    primary, secondary = plan.primary, plan.secondary
    for cell_id, record in cells.items():
        spec = record.get('cell', {})
        if spec.get('kind') == 'dense_eval' and spec.get('split') == 'val' and record.get('status') == 'done':
            it = spec.get('iteration') or (dense_curve_iters(plan) if plan.dense else None)
            metrics = record['result']['metrics']
            curve.append({'iteration': it, primary: plan.metric(metrics, primary),
                          secondary: plan.metric(metrics, secondary)})
    curve.sort(key=lambda p: p['iteration'] or 0)
    out = dict(curve=curve, val=done(cells, Cell('dense_eval', split='val')),
               test=done(cells, Cell('dense_eval', split='test')))
    trained = done(cells, Cell('dense_train'))
    if trained and trained.get('modalities'):  # dense.recipe='modalities': its fused vs single-sensor val table
        out['modalities'] = trained['modalities']
    if len(curve) >= 2 and None not in (curve[-1][primary], curve[-2][primary]):
        gain = curve[-1][primary] - curve[-2][primary]
        out['last_gain'] = gain
        out['plateaued'] = gain < float(plan.dense.get('plateau_tol', 0.01))
    return out


def beta_figures(cells: dict, plan: Plan) -> dict:
    rows = []
    for beta in plan.beta.get('values', []):
        found = [done(cells, beta_cell(plan, float(beta), s)) for s in plan.seeds]
        rows.append(_row([r for r in found if r], f'β = {beta:g}', plan, beta=float(beta),
                         missing=sum(r is None for r in found)))
    chosen, missing = choose_beta(cells, plan) if plan.beta.get('values') else (plan.beta['default'], [])
    return dict(rows=rows, sparsity=plan.beta.get('sparsity'), chosen=chosen, complete=not missing,
                chosen_on_val=bool(plan.beta.get('choose_on_val')))


def size_figures(cells: dict, plan: Plan) -> list[dict]:
    rows = []
    for s in plan.sparsities:
        ratios = [r['result']['size']['ratio'] for r in cells.values()
                  if r.get('status') == 'done' and r['cell'].get('kind') == 'oneshot'
                  and r['cell'].get('sparsity') == s]
        dense = [r['result']['size']['dense_bytes'] for r in cells.values()
                 if r.get('status') == 'done' and r['cell'].get('kind') == 'oneshot']
        if ratios:
            rows.append(dict(sparsity=s, ratio_min=min(ratios), ratio_max=max(ratios),
                             dense_mb=dense[0] / 1e6, n=len(ratios)))
    return rows


def additivity_figures(cells: dict, plan: Plan) -> dict:
    per_seed = {}
    points = []
    for seed in plan.seeds:
        result = done(cells, Cell('additivity', seed=seed))
        if result is not None:
            per_seed[seed] = result['correlation']
            points += [dict(p, seed=seed) for p in result['points']]
    return dict(per_seed=per_seed, points=points)


def cut_statement(plan: Plan) -> list[str]:
    """What the plan leaves out of the full protocol (the issue's matrix), in words."""
    notes = []
    full, rows = plan.full_finetune_rows(), plan.finetune_rows()
    missing = [r for r in full if r not in rows]
    if missing:
        notes.append('finetuned cells limited to ' + ', '.join(
            f'{METHODS[m].label} ({VARIANTS[v]})' for m, v in rows) + '; not finetuned: ' + ', '.join(
            f'{METHODS[m].label} ({VARIANTS[v]})' for m, v in missing))
    ft = [float(s) for s in plan.finetune.get('sparsities', [])]
    if rows and sorted(ft) != sorted(map(float, plan.sparsities)):
        notes.append('finetuned at ' + ', '.join(f'{s:.0%}' for s in ft) + ' only (one-shot at '
                     + ', '.join(f'{s:.0%}' for s in plan.sparsities) + ')')
    from .robustness import cut_notes
    notes += cut_notes(plan)
    if len(plan.seeds) < 3:
        notes.append(f'{len(plan.seeds)} seed(s) only: fewer than the protocol\'s 3 (a smoke run, not a result)')
    return notes


def metric_spec(plan: Plan) -> dict:
    """What the figures' metric names are: ``primary``, ``secondary`` and their ``keys`` in the results' metrics."""
    names = (plan.primary, plan.secondary)
    return dict(primary=plan.primary, secondary=plan.secondary,
                keys={name: (plan.metrics.get('keys') or {}).get(name, name) for name in names})


def metric_names(fig: dict) -> tuple[str, str]:
    """(primary, secondary) metric names of the figures (NDS, mAP for figures without ``metrics``)."""
    spec = fig.get('metrics') or DEFAULT_METRICS
    return spec['primary'], spec['secondary']


def figures(cells: dict[str, dict], plan: Plan) -> dict:
    """Every figure of the report, as plain data."""
    ft_sparsities = [float(s) for s in plan.finetune.get('sparsities', [])] if plan.finetune_rows() else []
    oneshot = {f'{s:g}': table(cells, plan, 'oneshot', s) for s in plan.sparsities}
    finetune = {f'{s:g}': table(cells, plan, 'finetune', s) for s in ft_sparsities}
    costs = done(cells, Cell('costs', seed=plan.seeds[0]))
    from .robustness import figures as robustness_figures
    return dict(
        metrics=metric_spec(plan), dense=dense_figures(cells, plan), oneshot=oneshot, finetune=finetune,
        verdicts={regime: {k: verdicts(v, metric=plan.primary) for k, v in tables.items()}
                  for regime, tables in (('oneshot', oneshot), ('finetune', finetune))},
        # the ablation (does the regulariser help?) and the secondary metric, with the same rules
        verdicts_rd={regime: {k: verdicts(v, metric=plan.primary, baselines=('rd',)) for k, v in tables.items()}
                     for regime, tables in (('oneshot', oneshot), ('finetune', finetune))},
        verdicts_secondary={regime: {k: verdicts(v, metric=plan.secondary) for k, v in tables.items()}
                            for regime, tables in (('oneshot', oneshot), ('finetune', finetune))},
        beta=beta_figures(cells, plan), additivity=additivity_figures(cells, plan), costs=costs,
        sizes=size_figures(cells, plan), cut=cut_statement(plan), robustness=robustness_figures(cells, plan),
        failed=sorted(f'{k}: {r.get("error", "")}' for k, r in cells.items() if r.get('status') == 'failed'),
        missing=sorted(k for k, r in cells.items() if r.get('status') == 'missing'),
        done=sum(r.get('status') == 'done' for r in cells.values()))
