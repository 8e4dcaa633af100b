"""docs/benchmarks.md from the benchmark json (``meta`` + ``figures``): tables, the command, the machine, the date.

The metric columns and words are the figures' (``figures['metrics']``: the plan's primary and secondary metric).
"""
from __future__ import annotations

from .metrics import metric_value
from .report import MODALITY_ORDER, metric_names
from .robustness import UNSTABLE

GOALS = dict(memo=5.0, fisher=50.0, mask=0.03, lsi=0.20, size=0.30)
SENSOR_WORDS = {'lidar': 'LiDAR', 'camera': 'camera'}
REGIME_WORDS = {'oneshot': 'one-shot', 'finetune': 'finetuned'}
NOISE = {True: 'by more than one std', False: 'within one std (not a clear difference)',
         None: 'one seed only (no spread measured)'}


def _ms(entry: dict | None, n: int) -> str:
    if not entry:
        return '–'
    return f'{entry["mean"]:.3f}' if n == 1 else f'{entry["mean"]:.3f} ± {entry["std"]:.3f}'


def _modalities(rows: list[dict]) -> list[str]:
    found = {m for r in rows for m in r.get('modalities', {})}
    return [m for m in MODALITY_ORDER if m in found] + sorted(found - set(MODALITY_ORDER))


def metric_table(rows: list[dict], metrics: tuple[str, str] = ('NDS', 'mAP')) -> list[str]:
    """One line per row: the two metrics (mean ± std over seeds), the sparsity overall and per modality, seeds."""
    mods = _modalities(rows)
    head = ['method', *metrics, 'sparsity', *[f'{m} sparsity' for m in mods], 'seeds']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        n = r.get('n', 0)
        seeds = 'seed-free' if r.get('seed_free') else str(n)
        if r.get('missing'):
            seeds += f' ({r["missing"]} missing)'
        cells = [r['label'], *[_ms(r.get(name), n) for name in metrics],
                 f'{r["sparsity"]:.3f}' if 'sparsity' in r else '–',
                 *[f'{r["modalities"][m]:.3f}' if m in r.get('modalities', {}) else '–' for m in mods], seeds]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def verdict_lines(verdicts: dict[str, list[dict]], regime: str, metric: str = 'NDS', *,
                  best: bool = True) -> list[str]:
    """One line per MMPrune4U row: the gap of the means to the baseline (``best``: the best of several, else the
    one named), its noise, and the per-seed pairs."""
    lines = []
    for sparsity, items in verdicts.items():
        for v in items:
            word = 'beats' if v['wins'] else '**does not beat**'
            noise = NOISE[v['beyond_std']]
            other = f'the best baseline ({v["best_baseline"]})' if best else v['best_baseline']
            lines.append(f'- {regime} {float(sparsity):.0%}: {v["method"]} {word} {other} on {metric}: '
                         f'{v["gap"]:+.4f}, {noise}{paired_text(v)}.')
    return lines


def paired_text(verdict: dict) -> str:
    """'; paired by seed: +0.012 / -0.003 (higher in 1 of 2 seeds)', or '' without pairs."""
    p = verdict.get('paired')
    if not p:
        return ''
    return (f'; paired by seed: ' + ' / '.join(f'{d:+.4f}' for d in p['diffs'])
            + f' (higher in {p["wins"]} of {len(p["diffs"])} seeds)')


def robustness_lines(rob: dict | None, metrics: tuple[str, str] = ('NDS', 'mAP')) -> list[str]:
    """The degraded-sensor section: per corruption, the table, the verdicts and the single-sensor reference."""
    if not rob:
        return []
    p, q = metrics
    out = ['## Degraded sensors (test split)', '',
           f'Each model is evaluated on the test split under each corruption, one sensor degraded at a time, with '
           f'corruption seed {rob["seed"]} for every model (paired). Retention = its {p} under the corruption / the '
           f'dense model\'s {p} under the same corruption (mean ± std of the per-seed ratios). The reference is the '
           f'single-sensor model of the sensor that still works, evaluated clean: a fused model that loses one '
           f'sensor should not fall below it.', '']
    for name, t in rob['tables'].items():
        out += [f'### {name} ({SENSOR_WORDS[t["sensor"]]} degraded)', '']
        if t['dense_corrupted'] is not None and t['dense_clean'] is not None:
            out += [f'Dense model: test {p} {t["dense_clean"]:.3f} clean, {t["dense_corrupted"]:.3f} under '
                    f'{name}.' + (f' **It keeps less than {UNSTABLE:.0%} of its clean {p}: the retention ratios '
                                  f'divide by a near-zero number and are unstable; compare the {p} column.**'
                                  if t.get('unstable') else ''), '']
        head = ['model', 'regime', p, q, 'retention', 'seeds']
        out += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        for r in t['rows']:
            n = r.get('n', 0)
            seeds = 'seed-free' if r.get('seed_free') else str(n)
            if r.get('missing'):
                seeds += f' ({r["missing"]} missing)'
            out.append('| ' + ' | '.join([r['label'], _regime(r), _ms(r.get(p), n), _ms(r.get(q), n),
                                          _ms(r.get('retention'), n), seeds]) + ' |')
        ref = t['reference']
        if ref:
            out.append(f'| {ref["label"]} | reference | {_num(ref[p])} | {_num(ref[q])} | – | 1 |')
        out.append('')
        for group in t['verdicts']:
            where = f'{REGIME_WORDS[group["regime"]]} {group["sparsity"]:.0%}'
            for against, items in (('{}', group['rd']), ('the best other baseline ({})', group['others'])):
                for v in items:
                    word = 'retains more than' if v['wins'] else '**does not retain more than**'
                    out.append(f'- {where}: {v["method"]} {word} {against.format(v["best_baseline"])}: retention '
                               f'{v["gap"]:+.4f}, {NOISE[v["beyond_std"]]}.')
        words = SENSOR_WORDS[t['reference_sensor']]
        if not ref or ref[p] is None:
            out.append(f'- No {words}-only reference model was evaluated (`robustness.references.'
                       f'{t["reference_sensor"]}`).')
        elif t['below_reference']:
            out.append(f'- **Below the {words}-only reference** ({p} {ref[p]:.3f}): '
                       + ', '.join(t['below_reference']) + '.')
        else:
            out.append(f'- No model falls below the {words}-only reference ({p} {ref[p]:.3f}).')
        out.append('')
    return out


def _regime(row: dict) -> str:
    if row['regime'] == 'dense':
        return '–'
    if row['sparsity_target'] is None:
        return f'{REGIME_WORDS[row["regime"]]} (no pruning)'
    return f'{REGIME_WORDS[row["regime"]]} {row["sparsity_target"]:.0%}'


def _goal(value: float | None, goal: float, higher: bool) -> str:
    if value is None:
        return '–'
    ok = value >= goal if higher else value <= goal
    return 'met' if ok else '**not met**'


def costs_lines(costs: dict | None, sizes: list[dict]) -> list[str]:
    lines = ['| cost | measured | goal | |', '|---|---|---|---|']
    if costs:
        c = costs['curves']
        sp = c['speedup']
        full = c['leaf_forwards']
        lines += [
            f'| curves, memoised exact vs plain exact ({c["layers"]} layers × {c["levels"]} levels, '
            f'{c["batches"]} batch(es); both timed on the same {c["layers_timed"]} layers) | '
            f'{sp["memo_vs_plain"]:.1f}× cheaper ({c["seconds"]["exact_memo_subset"]:.1f} s vs '
            f'{c["seconds"]["exact_plain_subset"]:.1f} s) | ≥ {GOALS["memo"]:.0f}× | '
            f'{_goal(sp["memo_vs_plain"], GOALS["memo"], True)} |']
        if sp.get('memo_vs_plain_leaf_forwards'):
            lines.append(f'| the same in leaf-module forwards, all layers (the seed\'s curves) | '
                         f'{sp["memo_vs_plain_leaf_forwards"]:.1f}× fewer ({full["exact_memo"]:,} vs '
                         f'{full["exact_plain"]:,}) | | |')
        if c['seconds'].get('seed_curves'):
            lines.append(f'| one seed\'s curves as the hook measures them (memoised exact, all layers, + local R) | '
                         f'{c["seconds"]["seed_curves"]:.0f} s | | |')
        lines.append(
            f'| curves, fisher ({c["fisher_backward_passes"]} backward passes, all layers) vs plain exact (scaled '
            f'to all layers: {c["seconds"]["exact_plain"]:.0f} s) | {sp["fisher_vs_plain"]:.1f}× cheaper '
            f'({c["seconds"]["fisher"]:.1f} s) | ≥ {GOALS["fisher"]:.0f}× | '
            f'{_goal(sp["fisher_vs_plain"], GOALS["fisher"], True)} |')
        dp = costs['dp']
        worst = max(r['seconds'] for r in dp['rows'])
        lines.append(f'| DP allocation (L = {dp["layers"]}, K = {dp["levels"]}, T = {dp["bins"]}) | '
                     f'≤ {worst:.3f} s per target | | |')
        st = costs['step']
        lines.append(f'| per-step overhead of mask re-application (+ gradient masks) vs plain training | '
                     f'{st["mask_overhead"]:+.1%} ({st["seconds_per_step"]["plain"]:.3f} s/step plain) | '
                     f'< {GOALS["mask"]:.0%} | {_goal(st["mask_overhead"], GOALS["mask"], False)} |')
        if 'lsi_overhead' in st:
            lines.append(f'| per-step overhead of the LSI loss (reference `{st["lsi_reference"]}`) vs plain '
                         f'training | {st["lsi_overhead"]:+.1%} | < {GOALS["lsi"]:.0%} | '
                         f'{_goal(st["lsi_overhead"], GOALS["lsi"], False)} |')
    for row in sizes:
        goal = f'≤ {GOALS["size"]:.0%}' if abs(row['sparsity'] - 0.8) < 1e-9 else ''
        verdict = _goal(row['ratio_max'], GOALS['size'], False) if goal else ''
        lines.append(f'| sparse checkpoint size at {row["sparsity"]:.0%} vs dense ({row["dense_mb"]:.2f} MB) | '
                     f'{row["ratio_min"]:.3f}–{row["ratio_max"]:.3f} of dense (over {row["n"]} pruned models) | '
                     f'{goal} | {verdict} |')
    if costs:
        agree = costs['curves']['fisher_vs_exact']
        lines += ['', f'Fisher vs exact: Spearman correlation of the curves {_num(agree["spearman_all"])}; RD '
                  'allocations from the fisher curves, per target: ' + '; '.join(
                      f'{a["sparsity"]:.0%}: mean |Δs| {a["mean_abs_diff"]:.3f}, exact-curve cost '
                      f'{a["exact_cost_ratio"]:.2f}× the exact allocation\'s' for a in agree['allocations']) + '.']
    return lines


def scoring_note(plan: dict) -> str:
    """What the test split's tables score when the plan replaces the test pipeline (e.g. only the points in the
    camera's view); empty when it does not."""
    pipeline = (plan.get('splits') or {}).get('test', {}).get('test_dataloader.dataset.pipeline')
    if not pipeline:
        return ''
    types = [t.get('type', '?') for t in pipeline if isinstance(t, dict)]
    if 'PointsInCameraFOV' in types:
        return 'scored only on the points in the camera\'s field of view (`PointsInCameraFOV`)'
    return 'test pipeline set by the plan: ' + ', '.join(f'`{t}`' for t in types)


def related_lines(entries: list[dict]) -> list[str]:
    """Other plans' published test tables in short (``entries``: dicts with ``link`` to the report, ``json`` and its
    ``meta`` and ``figures``, both None when not published): per report, the primary metric of every one-shot and
    finetuned row by sparsity, mean ± std over seeds, and a link to the full report."""
    if not entries:
        return []
    out = ['## Other benchmarks (summaries: each links to its full report)', '']
    for e in entries:
        if e['figures'] is None:
            out += [f'### [{e["link"]}]({e["link"]})', '', f'Not published yet: `{e["json"]}` does not exist (run '
                    'its plan).', '']
            continue
        fig, meta = e['figures'], e['meta']
        p = metric_names(fig)[0]
        note = scoring_note(meta['plan'])
        dense = fig['dense'].get('test')
        dense_text = f'; the dense model: {_num4(metric_value(dense["metrics"], fig["metrics"], p))}' if dense else ''
        out += [f'### {meta.get("title", e["link"])}: [{e["link"]}]({e["link"]})', '',
                f'Model `{meta["config"]}`; `{meta["command"]}`; {meta["date"]}. Test split'
                f'{f" ({note})" if note else ""}, {p}, mean ± std over seeds{dense_text}.', '']
        if fig.get('missing') or fig.get('failed'):
            out += [f'**Partial**: {len(fig.get("missing", []))} cell(s) not run, {len(fig.get("failed", []))} '
                    'failed; see the full report.', '']
        for regime, tables in (('one-shot', fig['oneshot']), ('finetuned', fig['finetune'])):
            if not tables:
                continue
            by_label: dict[str, dict[str, dict]] = {}
            for s, rows in tables.items():
                for r in rows:
                    by_label.setdefault(r['label'], {})[s] = r
            head = ['method', *[f'{regime} {float(s):.0%}' for s in tables]]
            out += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
            for label, row in by_label.items():
                values = [_ms(row[s].get(p), row[s].get('n', 0)) if s in row else '–' for s in tables]
                out.append('| ' + ' | '.join([label, *values]) + ' |')
            out.append('')
    return out


def render(meta: dict, fig: dict, plots: dict[str, str], related: list[dict] | None = None) -> str:
    plan = meta['plan']
    names = metric_names(fig)
    p, q = names
    held_out = ('held-out sequences of the generated set'
                if (plan.get('synthetic') or {}).get('kind') == 'semantickitti' else 'another generated set')
    out = [f'# Benchmark: {meta.get("title", "MMPrune4U against baselines")}', '',
           '_Generated by `tools/benchmark.py` from `' + meta.get('json', 'benchmark.json')
           + '`; do not edit by hand (rerun with `--report-only`)._', '',
           f'- Command: `{meta["command"]}`',
           f'- Date: {meta["date"]}; wall time of the run that finished it: {meta.get("hours", 0):.2f} h',
           f'- Machine: {meta["machine"]}',
           f'- Model config: `{meta["config"]}`; dense checkpoint: {meta["checkpoint"]}',
           f'- Seeds {plan["seeds"]} (a seed sets the calibration samples and the finetuning data order); '
           f'calibration: {plan["calib"]["samples"]} train sample(s) per seed; splits: tuning (β) on **val**, '
           f'every table below on **test** ({held_out}'
           + (f'; {note}' if (note := scoring_note(plan)) else '') + '), except the β sweep.']
    if fig['cut']:
        out += ['- Cut from the full protocol: ' + '; '.join(fig['cut']) + '.']
    if fig.get('missing'):
        out += ['', f'**Partial report**: {fig["done"]} of {fig["done"] + len(fig["missing"]) + len(fig["failed"])} '
                'cells have run; the rest (e.g. `' + '`, `'.join(fig['missing'][:3]) + '`) have not, so tables and '
                'verdicts below cover what has (fewer seeds or rows, or none).']
    if fig['failed']:
        out += ['', '**Failed cells** (their rows show fewer seeds):', '', *[f'- `{f}`' for f in fig['failed']]]
    d = fig['dense']
    out += ['', '## Dense model', '']
    if d['curve']:
        out += [f'| iteration | val {p} | val {q} |', '|---|---|---|',
                *[f'| {c["iteration"]} | {_num4(c[p])} | {_num4(c[q])} |' for c in d['curve']], '']
        if 'plateaued' in d:
            out.append(f'Last gain in val {p}: {d["last_gain"]:+.4f}: ' + (
                'plateaued.' if d['plateaued'] else '**not plateaued**: the dense model is still improving, so '
                'finetuned rows partly measure extra training (compare with the equal-budget dense row).'))
    if d.get('modalities'):
        keys = ['NDS', 'mAP', 'mATE', 'mASE', 'mAOE']
        dense = plan.get('dense') or {}
        variant, _, config = (dense.get('fused_variant') or '').partition('=')
        out += ['', 'Trained by `tools/compare_modalities.py` (stage 2 starts the fused model from the LiDAR-only and '
                'camera-only models of stage 1; every weight trained equally long'
                + ('; the fused stage 2 with LiDAR dropout' if dense.get('lidar_dropout') else '') + '), val split'
                + (f'; the dense model is the fused variant `lidar-camera_{variant}` (stage 2 trained with `{config}`)'
                   if variant else '') + ':', '',
                '| model | ' + ' | '.join(keys) + ' |', '|---' * (len(keys) + 1) + '|',
                *[f'| {name} | ' + ' | '.join(_metric(r, k) for k in keys) + ' |'
                  for name, r in d['modalities'].items()], '']
    for split in ('val', 'test'):
        if d.get(split):
            values = [metric_value(d[split]['metrics'], fig['metrics'], name) for name in names]
            out.append(f'Dense on {split}: {p} {_num4(values[0])}, {q} {_num4(values[1])}.')
    out += ['', '## One-shot (no finetuning), test split', '']
    for s, rows in fig['oneshot'].items():
        out += [f'### {float(s):.0%}', '', *metric_table(rows, names), '']
    if fig['finetune']:
        out += ['## Finetuned (same iterations, schedule and data order for every row), test split', '']
        for s, rows in fig['finetune'].items():
            out += [f'### {float(s):.0%}', '', *metric_table(rows, names), '']
    out += ['## Reading the result', '', f'Against the best baseline by mean {p}:', '',
            *verdict_lines(fig['verdicts']['oneshot'], 'one-shot', p),
            *verdict_lines(fig['verdicts']['finetune'], 'finetuned', p), '']
    if fig.get('verdicts_rd'):
        out += ['Against RD (β = 0), the same allocator without the regulariser (the ablation):', '',
                *verdict_lines(fig['verdicts_rd']['oneshot'], 'one-shot', p, best=False),
                *verdict_lines(fig['verdicts_rd']['finetune'], 'finetuned', p, best=False), '']
    if fig.get('verdicts_secondary'):
        out += [f'On {q}, against the best baseline by mean {q}:', '',
                *verdict_lines(fig['verdicts_secondary']['oneshot'], 'one-shot', q),
                *verdict_lines(fig['verdicts_secondary']['finetune'], 'finetuned', q), '']
    out += robustness_lines(fig.get('robustness'), names)
    b = fig['beta']
    if b['rows']:
        out += [f'## β sweep (val split, one-shot {float(b["sparsity"]):.0%})', '', *metric_table(b['rows'], names),
                '', f'β used for the MMPrune4U rows: {b["chosen"]:g} (' + (
                    f'best mean val {p}' if b['chosen_on_val'] else 'fixed by the plan') + ').', '']
    a = fig['additivity']
    if a['per_seed']:
        out += ['## Additivity: measured whole-model distortion vs Σ_l D_l(s_l)', '',
                '| seed | points | Pearson | Spearman | Pearson (random only) | Spearman (random only) |',
                '|---|---|---|---|---|---|']
        for seed, c in a['per_seed'].items():
            r = c.get('random', {})
            out.append(f'| {seed} | {c["all"]["n"]} | {_num(c["all"]["pearson"])} | {_num(c["all"]["spearman"])} | '
                       f'{_num(r.get("pearson"))} | {_num(r.get("spearman"))} |')
        out.append('')
    out += ['## Costs', '', *costs_lines(fig['costs'], fig['sizes']), '']
    if plots:
        out += ['## Plots', '', *[f'![{name}]({path})' for name, path in plots.items()], '']
    out += related_lines(related or [])
    return '\n'.join(out)


def _num(x) -> str:
    return '–' if x is None else f'{x:.3f}'


def _num4(x) -> str:
    return '–' if x is None else f'{x:.4f}'


def _metric(result: dict, key: str) -> str:
    """A metric of a tools/test.py metrics json by its short name (its keys carry a prefix), or '–'."""
    value = next((v for k, v in result.get('metrics', {}).items() if k.split('/')[-1] == key), None)
    return '–' if value is None else f'{value:.4f}'
