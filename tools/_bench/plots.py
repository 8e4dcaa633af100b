"""The report's plots (matplotlib, Agg): the primary metric vs sparsity, per-modality sparsity, additivity scatter,
β sweep, the dense model's val curve, and the retention of each model under each corruption. Each function takes the
``figures`` dict and writes one png; returns None when the figures lack its data. The metrics are the figures'
(``figures['metrics']``): NDS / mAP for the nuScenes plan, mIoU / acc for the segmentors'; the first plot's file is
named after the primary one (``nds_vs_sparsity.png``, ``miou_vs_sparsity.png``)."""
from __future__ import annotations

import re
from pathlib import Path

from .metrics import DEFAULT_METRICS, metric_value
from .report import MODALITY_ORDER, metric_names


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def metric_vs_sparsity(fig: dict, path: Path) -> Path | None:
    plt = _plt()
    metric = metric_names(fig)[0]
    regimes = [(k, fig[k]) for k in ('oneshot', 'finetune') if fig.get(k)]
    if not regimes:
        return None
    f, axes = plt.subplots(1, len(regimes), figsize=(6 * len(regimes), 4), squeeze=False)
    for ax, (name, tables) in zip(axes[0], regimes):
        series: dict[str, list] = {}
        for s, rows in tables.items():
            for r in rows:
                if metric in r and r.get('method') != 'dense':
                    series.setdefault(r['label'], []).append((float(s), r[metric]['mean'], r[metric]['std']))
        reference = _dense_reference(fig, name)
        if reference is not None:
            ax.axhline(reference[1], color='k', ls=':', lw=1, label=reference[0])
        for label, pts in series.items():
            pts.sort()
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker='o',
                        capsize=3, label=label)
        ax.set(title=f'{name} (test)', xlabel='global sparsity', ylabel=f'{metric} (mean ± std over seeds)')
        ax.legend(fontsize=7)
    f.tight_layout()
    f.savefig(path, dpi=110)
    plt.close(f)
    return path


def _dense_reference(fig: dict, regime: str) -> tuple[str, float] | None:
    """The dense model's test primary metric (one-shot) or the equal-budget dense finetune's mean (finetuned)."""
    metric = metric_names(fig)[0]
    if regime == 'oneshot':
        test = (fig.get('dense') or {}).get('test')
        value = None if not test else metric_value(test['metrics'], fig.get('metrics') or DEFAULT_METRICS, metric)
        return None if value is None else ('dense', value)
    for rows in (fig.get('finetune') or {}).values():
        for r in rows:
            if r.get('method') == 'dense' and metric in r:
                return r['label'], r[metric]['mean']
    return None


def modality_sparsity(fig: dict, path: Path) -> Path | None:
    plt = _plt()
    tables = fig.get('oneshot') or {}
    if not tables:
        return None
    f, axes = plt.subplots(1, len(tables), figsize=(4.5 * len(tables), 4), squeeze=False, sharey=True)
    for ax, (s, rows) in zip(axes[0], tables.items()):
        rows = [r for r in rows if r.get('modalities')]
        mods = [m for m in MODALITY_ORDER if any(m in r['modalities'] for r in rows)] or \
            sorted({m for r in rows for m in r['modalities']})
        width = 0.8 / max(len(mods), 1)
        for j, m in enumerate(mods):
            ax.bar([i + j * width for i in range(len(rows))], [r['modalities'].get(m, 0) for r in rows], width,
                   label=m)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
        ax.set_xticklabels([r['label'] for r in rows], rotation=60, ha='right', fontsize=7)
        ax.set(title=f'one-shot {float(s):.0%}', ylim=(0, 1))
    axes[0][0].set_ylabel('sparsity of the modality\'s weights')
    axes[0][0].legend(fontsize=7)
    f.tight_layout()
    f.savefig(path, dpi=110)
    plt.close(f)
    return path


def additivity(fig: dict, path: Path) -> Path | None:
    plt = _plt()
    points = fig.get('additivity', {}).get('points', [])
    points = [p for p in points if p['predicted'] > 0 and p['measured'] > 0]
    if not points:
        return None
    f, ax = plt.subplots(figsize=(5.5, 5))
    for kind, marker in (('random', 'o'), ('method', 's')):
        pts = [p for p in points if p['kind'] == kind]
        ax.scatter([p['predicted'] for p in pts], [p['measured'] for p in pts], marker=marker, s=18, alpha=0.7,
                   label=f'{kind} allocations ({len(pts)})')
    lo = min(min(p['predicted'], p['measured']) for p in points)
    hi = max(max(p['predicted'], p['measured']) for p in points)
    ax.plot([lo, hi], [lo, hi], 'k--', lw=0.8, label='y = x')
    ax.set(xscale='log', yscale='log', xlabel='Σ_l D_l(s_l) from the curves', ylabel='measured distortion',
           title='additivity')
    ax.legend(fontsize=7)
    f.tight_layout()
    f.savefig(path, dpi=110)
    plt.close(f)
    return path


def beta_sweep(fig: dict, path: Path) -> Path | None:
    plt = _plt()
    metric = metric_names(fig)[0]
    rows = [r for r in fig.get('beta', {}).get('rows', []) if metric in r]
    if not rows:
        return None
    f, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r['beta'] for r in rows]
    a1.errorbar(xs, [r[metric]['mean'] for r in rows], yerr=[r[metric]['std'] for r in rows], marker='o', capsize=3)
    a1.set(xscale='symlog', xlabel='β', ylabel=f'val {metric}',
           title=f'β sweep, one-shot {fig["beta"]["sparsity"]:.0%}')
    a1.set_xscale('symlog', linthresh=0.1)
    for m in MODALITY_ORDER:
        if all(m in r.get('modalities', {}) for r in rows):
            a2.plot(xs, [r['modalities'][m] for r in rows], marker='o', label=m)
    a2.set_xscale('symlog', linthresh=0.1)
    a2.set(xlabel='β', ylabel='sparsity of the modality', ylim=(0, 1))
    a2.legend(fontsize=7)
    f.tight_layout()
    f.savefig(path, dpi=110)
    plt.close(f)
    return path


def dense_curve(fig: dict, path: Path) -> Path | None:
    plt = _plt()
    primary, secondary = metric_names(fig)
    curve = [p for p in fig.get('dense', {}).get('curve', []) if p.get(primary) is not None]
    if len(curve) < 2:
        return None
    f, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p['iteration'] for p in curve], [p[primary] for p in curve], marker='o', label=primary)
    points = [p for p in curve if p.get(secondary) is not None]
    ax.plot([p['iteration'] for p in points], [p[secondary] for p in points], marker='s', label=secondary)
    ax.set(xlabel='training iteration', ylabel='val metric', title='dense model')
    ax.legend(fontsize=7)
    f.tight_layout()
    f.savefig(path, dpi=110)
    plt.close(f)
    return path


def retention(fig: dict, path: Path) -> Path | None:
    """Retention (corrupted primary metric / the dense model's corrupted one) per corruption, one bar per model, one
    panel per regime (one-shot, finetuned); error bars are the std over seeds."""
    plt = _plt()
    tables = (fig.get('robustness') or {}).get('tables') or {}
    names = list(tables)
    panels = {}
    for name in names:
        for r in tables[name]['rows']:
            if r['regime'] != 'dense' and 'retention' in r:
                s = r['sparsity_target']
                label = r['label'] + ('' if s is None else f' ({s:.0%})')
                panels.setdefault(r['regime'], {}).setdefault(label, {})[name] = r['retention']
    if not panels:
        return None
    f, axes = plt.subplots(len(panels), 1, figsize=(max(6.0, 1.4 * len(names) + 3), 3.8 * len(panels)),
                           squeeze=False)
    for ax, (regime, series) in zip(axes[:, 0], panels.items()):
        width = 0.8 / len(series)
        for j, (label, values) in enumerate(series.items()):
            xs = [i + j * width for i, n in enumerate(names) if n in values]
            ax.bar(xs, [values[n]['mean'] for n in names if n in values], width,
                   yerr=[values[n]['std'] for n in names if n in values], capsize=2, label=label)
        ax.axhline(1.0, color='k', ls=':', lw=1)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))])
        ax.set_xticklabels(names, rotation=30, ha='right', fontsize=7)
        ax.set(title=f'{"one-shot" if regime == "oneshot" else "finetuned"} (test)',
               ylabel=f'retention vs dense ({metric_names(fig)[0]} ratio)')
        ax.legend(fontsize=6, ncol=2)
    f.tight_layout()
    f.savefig(path, dpi=110)
    plt.close(f)
    return path


PLOTS = dict(metric_vs_sparsity=metric_vs_sparsity, modality_sparsity=modality_sparsity, additivity=additivity,
             beta_sweep=beta_sweep, dense_curve=dense_curve, retention=retention)


def plot_name(name: str, fig: dict) -> str:
    """A plot's file stem: ``metric_vs_sparsity`` is named after the primary metric (``NDS`` -> ``nds_vs_sparsity``,
    ``mIoU`` -> ``miou_vs_sparsity``)."""
    if name != 'metric_vs_sparsity':
        return name
    return re.sub(r'[^a-z0-9]+', '_', metric_names(fig)[0].lower()).strip('_') + '_vs_sparsity'


def write_all(fig: dict, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, fn in PLOTS.items():
        name = plot_name(name, fig)
        path = fn(fig, folder / f'{name}.png')
        if path is not None:
            out[name] = path
    return out
