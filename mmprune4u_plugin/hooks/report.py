"""The pruning report in ``work_dir``: allocation json, per-layer table, and plots (matplotlib, Agg backend)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..core.curves import DistortionCurves
from ..core.layers import PrunableLayer
from ..core.masks import SparsityReport


def chosen_costs(curves: DistortionCurves | None, costs: np.ndarray | None,
                 sparsities: Mapping[str, float]) -> dict[str, float]:
    """Each layer's cost curve linearly interpolated at its chosen sparsity (empty without curves)."""
    if curves is None or costs is None:
        return {}
    return {name: float(np.interp(sparsities[name], curves.grid, costs[i])) for i, name in enumerate(curves.names)}


def write_report(out_dir: str | Path, layers: Sequence[PrunableLayer], sparsities: Mapping[str, float],
                 measured: SparsityReport, *, curves: DistortionCurves | None = None,
                 costs: np.ndarray | None = None, meta: Mapping | None = None) -> dict[str, Path]:
    """Write ``allocation.json``, ``layers.txt`` and the plots; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cost_at = chosen_costs(curves, costs, sparsities)
    rows = [{'name': lay.name, 'modality': lay.modality, 'weights': lay.numel,
             'sparsity': float(sparsities[lay.name]), 'cost': cost_at.get(lay.name)} for lay in layers]
    by_mod = {m: {'weights': n, 'zeros': z, 'sparsity': s} for m, (n, z, s) in measured.by_modality().items()}
    payload = {'meta': dict(meta or {}), 'global': {'weights': measured.total, 'zeros': measured.zeros,
                                                    'sparsity': measured.global_sparsity},
               'modalities': by_mod, 'layers': rows}
    paths = {'json': out / 'allocation.json', 'table': out / 'layers.txt'}
    paths['json'].write_text(json.dumps(payload, indent=1))
    width = max(len(r['name']) for r in rows)
    lines = [f'{"layer":<{width}}  {"modality":<8} {"weights":>9} {"sparsity":>8} {"cost":>10}']
    for r in rows:
        cost = '' if r['cost'] is None else f'{r["cost"]:.3e}'
        lines.append(f'{r["name"]:<{width}}  {r["modality"]:<8} {r["weights"]:>9d} {r["sparsity"]:>8.4f} {cost:>10}')
    for m, v in by_mod.items():
        lines.append(f'{"[" + m + "]":<{width}}  {"":<8} {v["weights"]:>9d} {v["sparsity"]:>8.4f}')
    lines.append(f'{"[global]":<{width}}  {"":<8} {measured.total:>9d} {measured.global_sparsity:>8.4f}')
    paths['table'].write_text('\n'.join(lines) + '\n')
    paths['sparsity_plot'] = _plot_sparsity(out / 'sparsity_per_layer.png', rows)
    if curves is not None and costs is not None:
        paths['curves_plot'] = _plot_curves(out / 'curves_extremes.png', curves, costs, sparsities)
    return paths


def summary(measured: SparsityReport) -> str:
    """One line for the Runner's logger."""
    mods = ', '.join(f'{m} {s:.3f}' for m, (_, _, s) in measured.by_modality().items())
    return f'global sparsity {measured.global_sparsity:.4f} ({measured.zeros}/{measured.total}); {mods}'


def _plot_sparsity(path: Path, rows: list[dict]) -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    mods = list(dict.fromkeys(r['modality'] for r in rows))
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(mods)}
    fig, ax = plt.subplots(figsize=(max(6, 0.12 * len(rows)), 3.5))
    ax.bar(range(len(rows)), [r['sparsity'] for r in rows], color=[colours[r['modality']] for r in rows])
    ax.set_xlabel('layer (network order)')
    ax.set_ylabel('sparsity')
    ax.set_ylim(0, 1)
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colours[m]) for m in mods], labels=mods, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_curves(path: Path, curves: DistortionCurves, costs: np.ndarray, sparsities: Mapping[str, float]) -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    top = costs[:, -1]
    order = np.argsort(top)
    picks = list(dict.fromkeys([*order[-3:][::-1], *order[:3]]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for i in picks:
        line, = ax.plot(curves.grid, costs[i], label=curves.names[i], lw=1.2)
        ax.axvline(sparsities[curves.names[i]], color=line.get_color(), ls=':', lw=0.8)
    ax.set_yscale('symlog', linthresh=1e-6)
    ax.set_xlabel('sparsity of the layer')
    ax.set_ylabel('cost D + beta R')
    ax.set_title('most and least sensitive layers (dotted: chosen)')
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
