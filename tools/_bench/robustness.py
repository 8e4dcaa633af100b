"""Degraded-sensor evaluation (issue 12): the plan's ``robustness`` key checked, and its figures.

The cells that evaluate under corruption are the plan's (:meth:`Plan.corrupted`); each stores
``result['corrupted'][name] = metrics`` beside its clean metrics. Per corruption the figures hold one row per model
(the dense model, each selected one-shot method and each finetune row at the selected sparsities) with the plan's
primary and secondary metric (NDS and mAP for the nuScenes plan) mean ± std over seeds and the *retention*, corrupted
primary metric / the dense model's under the same corruption (mean ± std of the per-seed ratios; the dense model is
one model, so its value is a constant divisor). Beside them: the clean primary metric of the single-sensor model of
the sensor that still works (the reference rows), and the verdicts, MMPrune4U against
RD (β = 0) and against the best other baseline on retention. Pure data, no OpenMMLab import (but :func:`problems`,
which reads the corruption presets).
"""
from __future__ import annotations

from .plan import BASELINES, METHODS, RECIPE_CHECKPOINT, SENSORS, VARIANTS, Cell, Plan, _same
from .report import _row, done, verdicts
from .stats import summarize

KEYS = ('corruptions', 'seed', 'oneshot', 'finetune', 'references')
REGIMES = {'dense': 'dense model', 'oneshot': 'one-shot', 'finetune': 'finetuned'}
UNSTABLE = 0.1  # under this share of its clean primary metric, the dense model's corrupted one is too small a divisor


def corrupted_sensor(name: str) -> str:
    """The sensor a corruption preset degrades, from its name: every preset of
    ``mmprune4u_plugin.datasets.corruptions.CORRUPTIONS`` is named ``lidar_...`` or ``camera_...``."""
    sensor = name.split('_', 1)[0]
    if sensor not in SENSORS:
        raise ValueError(f'corruption {name!r} names no sensor: it must start with one of {sorted(SENSORS)}_')
    return sensor


def other_sensor(sensor: str) -> str:
    return next(s for s in SENSORS if s != sensor)


def problems(plan: Plan) -> list[str]:
    """Everything wrong with ``plan.robustness``, in words ([] when it is fine)."""
    r = plan.robustness
    if not isinstance(r, dict):
        return [f'it must be a dict or None, but got robustness: {r!r}']
    found = [f'unknown key {k!r} (known: {list(KEYS)})' for k in r if k not in KEYS]
    names = list(r.get('corruptions') or [])
    if not names:
        found.append('`corruptions` must name at least one corruption, but got corruptions: []')
    from mmprune4u_plugin.datasets.corruptions import CORRUPTIONS
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        found.append(f'unknown corruptions {unknown} (known: {list(CORRUPTIONS)})')
    found += [f'corruption {n!r} names no sensor (lidar_... or camera_...)' for n in names
              if n in CORRUPTIONS and n.split('_', 1)[0] not in SENSORS]
    if len(set(names)) != len(names):
        found.append(f'`corruptions` repeats names: {names}')
    if type(r.get('seed', 0)) is not int:
        found.append(f'`seed` must be an int, but got seed: {r.get("seed")!r}')
    oneshot, finetune = r.get('oneshot') or {}, r.get('finetune') or {}
    bad = [m for m in oneshot.get('methods', []) if m not in plan.methods]
    if bad:
        found.append(f'`oneshot.methods` {bad} are not in the plan\'s methods {plan.methods}')
    bad = [s for s in oneshot.get('sparsities', []) if not _same(s, plan.sparsities)]
    if bad:
        found.append(f'`oneshot.sparsities` {bad} are not in the plan\'s sparsities {plan.sparsities}')
    ft = plan.finetune.get('sparsities', []) if plan.finetune_rows() else []
    bad = [s for s in finetune.get('sparsities', []) if not _same(s, ft)]
    if bad:
        found.append(f'`finetune.sparsities` {bad} are not in the plan\'s finetune sparsities {ft}')
    for sensor, ref in (r.get('references') or {}).items():
        if sensor not in SENSORS:
            found.append(f'`references` has unknown sensor {sensor!r} (known: {sorted(SENSORS)})')
        elif ref is not None and not (isinstance(ref, dict) and ref.get('config') and ref.get('checkpoint')):
            found.append(f'`references.{sensor}` must be None or dict(config=..., checkpoint=...), but got {ref!r}')
        elif ref is not None and ref['checkpoint'] == RECIPE_CHECKPOINT and plan.dense.get('recipe') != 'modalities':
            found.append(f'`references.{sensor}.checkpoint={RECIPE_CHECKPOINT!r}` needs `dense.recipe=\'modalities\'` '
                         '(the single-sensor models it trains)')
    return found


def cut_notes(plan: Plan) -> list[str]:
    """What the robustness matrix leaves out, in words (for the report's cut statement)."""
    if not plan.corruptions():
        return ['no degraded-sensor evaluation (`robustness` is None)']
    r, notes = plan.robustness, []
    oneshot, finetune = r.get('oneshot') or {}, r.get('finetune') or {}
    methods, sparsities = oneshot.get('methods', []), oneshot.get('sparsities', [])
    left = [METHODS[m].label for m in plan.methods if m not in methods]
    if not methods or not sparsities:
        notes.append('no one-shot model evaluated under corruption')
    elif left or len(sparsities) < len(plan.sparsities):
        notes.append('under corruption, one-shot at ' + _pct(sparsities) + ' only, for '
                     + ', '.join(METHODS[m].label for m in methods) + (f' (not {", ".join(left)})' if left else ''))
    ft = plan.finetune.get('sparsities', []) if plan.finetune_rows() else []
    chosen = finetune.get('sparsities', [])
    if ft and not chosen:
        notes.append('no finetuned model evaluated under corruption')
    elif len(chosen) < len(ft):
        notes.append(f'under corruption, finetuned at {_pct(chosen)} only (not '
                     f'{_pct([s for s in ft if not _same(s, chosen)])})')
    missing = [SENSORS[s] for s in SENSORS if s not in plan.references()]
    if missing:
        notes.append('no ' + ' / '.join(missing) + ' reference model (`robustness.references`)')
    return notes


def _pct(values) -> str:
    return ', '.join(f'{float(v):.0%}' for v in values)


def _corrupted_row(results: list[dict | None], name: str, base: float | None, label: str, plan: Plan,
                   **extra) -> dict:
    """The row of one model under corruption ``name``: the plan's two metrics, and retention against ``base`` (the
    dense model's corrupted primary metric), mean ± std over the seeds' results (None: a missing seed)."""
    found = [dict(r, metrics=r['corrupted'][name]) for r in results if r and name in r.get('corrupted', {})]
    row = _row(found, label, plan, missing=len(results) - len(found), **extra)
    values = [plan.metric(r['metrics'], plan.primary) for r in found]
    if found and base and None not in values:
        s = summarize([v / base for v in values])
        row['retention'] = dict(mean=s.mean, std=s.std)
    return row


def _models(cells: dict, plan: Plan) -> list[tuple[str, float | None, str, str | None, list]]:
    """(regime, sparsity, method, variant, results over seeds) of every model evaluated under corruption."""
    r = plan.robustness
    models = [('dense', None, 'dense_model', None, [done(cells, Cell('dense_eval', split='test'))])]
    oneshot = r.get('oneshot') or {}
    for s in oneshot.get('sparsities', []):
        for m in [m for m in plan.methods if m in oneshot.get('methods', [])]:
            seeds = plan.seeds if METHODS[m].needs_curves else [None]
            models.append(('oneshot', float(s), m, None, [
                done(cells, Cell('oneshot', method=m, sparsity=float(s), seed=seed, split='test')) for seed in seeds]))
    chosen = (r.get('finetune') or {}).get('sparsities', []) if plan.finetune_rows() else []
    rows = plan.finetune_rows()
    if chosen and ('dense', 'task') in rows:
        models.append(('finetune', None, 'dense', 'task', [
            done(cells, Cell('finetune', method='dense', variant='task', seed=seed, split='test'))
            for seed in plan.seeds]))
    for s in chosen:
        for m, v in [row for row in rows if row[0] != 'dense']:
            models.append(('finetune', float(s), m, v, [
                done(cells, Cell('finetune', method=m, variant=v, sparsity=float(s), seed=seed, split='test'))
                for seed in plan.seeds]))
    return models


def _label(method: str, variant: str | None) -> str:
    if method == 'dense_model':
        return 'dense'
    return METHODS[method].label + ('' if variant is None or method == 'dense' else f', {VARIANTS[variant]}')


def figures(cells: dict[str, dict], plan: Plan) -> dict | None:
    """Per corruption: the rows, the verdicts per (regime, sparsity), the reference of the sensor that still works,
    and the rows whose primary metric falls below it. None without ``robustness``."""
    if not plan.corruptions():
        return None
    refs = {}
    for sensor in SENSORS:
        result = done(cells, Cell('reference', sensor=sensor, split='test'))
        refs[sensor] = None if result is None else dict(
            label=f'{SENSORS[sensor]} model (clean)',
            **{k: plan.metric(result['metrics'], k) for k in (plan.primary, plan.secondary)})
    dense = done(cells, Cell('dense_eval', split='test'))
    models = _models(cells, plan)
    primary = plan.primary
    tables = {}
    for name in plan.corruptions():
        sensor = corrupted_sensor(name)
        corrupted = ((dense or {}).get('corrupted') or {}).get(name) or {}
        base = plan.metric(corrupted, primary)
        rows = [_corrupted_row(results, name, base, _label(m, v), plan, regime=regime, sparsity_target=s,
                               method=None if m == 'dense_model' else m, variant=v,
                               seed_free=m == 'dense_model' or (regime == 'oneshot' and not METHODS[m].needs_curves))
                for regime, s, m, v, results in models]
        groups = []
        for regime in ('oneshot', 'finetune'):
            for s in dict.fromkeys(r['sparsity_target'] for r in rows if r['regime'] == regime):
                if s is None:
                    continue
                group = [r for r in rows if r['regime'] == regime and r['sparsity_target'] == s]
                groups.append(dict(regime=regime, sparsity=s,
                                   rd=verdicts(group, metric='retention', baselines=('rd',)),
                                   others=verdicts(group, metric='retention',
                                                   baselines=tuple(b for b in BASELINES if b != 'rd'))))
        reference = refs[other_sensor(sensor)]
        below = [] if not reference or reference[primary] is None else [
            r['label'] + ('' if r['sparsity_target'] is None else f' ({REGIMES[r["regime"]]} '
                          f'{r["sparsity_target"]:.0%})') for r in rows if primary in r
            and r[primary]['mean'] < reference[primary]]
        clean = None if dense is None else plan.metric(dense['metrics'], primary)
        tables[name] = dict(sensor=sensor, reference_sensor=other_sensor(sensor), reference=reference,
                            dense_clean=clean, dense_corrupted=base,
                            unstable=base is not None and bool(clean) and base < UNSTABLE * clean,
                            rows=rows, verdicts=groups, below_reference=below)
    return dict(corruptions=plan.corruptions(), seed=plan.robustness.get('seed'), references=refs, tables=tables)
