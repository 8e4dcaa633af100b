"""Cost of the curve estimators on a real mmdet3d model, and how well `fisher` agrees with `exact`.

Prints, for one model: wall time and leaf-module forwards of the memoised exact estimator vs the plain one (a forward
to the last tap for every layer, level and batch), per modality group (a pass costs what lies downstream of the
pruned layer, so the groups differ), the fisher estimator's time, the Spearman rank correlation between fisher and
exact task-distortion curves, and how far the DP's 70% allocations from the two estimators differ.

    python tools/benchmark_curves.py [--model pointpillars|mvxnet|bevfusion-lite] [--levels 0 0.5 0.7 0.9]
        [--probes 16] [--memo-depth 2] [--layers N]

``bevfusion-lite`` is the benchmark's model (configs/demo) on the real nuScenes keyframe (six cameras) in
../shared/data; the KITTI models run on the real KITTI frame there, or on synthetic points without it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tools'))
SHARED = Path(os.environ.get('MMPRUNE4U_SHARED_DATA', REPO.parent / 'shared' / 'data'))

# model: (model config, data config or None = the model config, modality groups, modality taps, the real sample)
MODELS = {
    'pointpillars': ('pointpillars/pointpillars_tiny_8xb1-short_kitti-sample.py', None, dict(lidar=['']),
                     dict(lidar='neck'), SHARED / 'kitti-sample' / '000008.pkl'),
    'mvxnet': ('mvxnet/mvxnet_tiny_8xb1-short_kitti-sample.py', None,
               dict(camera=['img_'], fusion=['fusion_layer'], lidar=['pts_']),
               dict(camera='img_neck', lidar='pts_middle_encoder'), SHARED / 'kitti-sample' / '000008.pkl'),
    'bevfusion-lite': ('demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py',
                       'bevfusion_lite/bevfusion-lite_tiny_lidar-cam_1xb1-short_nus-sample.py',
                       dict(camera=['img_', 'view_transform'], lidar=['pts_middle_encoder'],
                            fusion=['fusion_layer', 'pts_backbone', 'pts_neck', 'bbox_head']),
                       dict(camera='view_transform', lidar='pts_middle_encoder'),
                       SHARED / 'nuscenes-v1.0-mini-sample'),
}


def evenly_spaced(items: list, n: int | None) -> list:
    """``n`` items spread over ``items`` (all of them when ``n`` is None or larger)."""
    if n is None or n >= len(items):
        return list(items)
    return [items[i] for i in sorted({int(round(x)) for x in np.linspace(0, len(items) - 1, n)})]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv: list[str] | None = None) -> dict:
    """Print the figures; return them (``groups``: per modality group, seconds and leaf forwards of both exact
    estimators on the timed layers; ``fisher_seconds``; ``plain_all_seconds``: plain exact scaled to all layers)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', choices=sorted(MODELS), default='pointpillars')
    parser.add_argument('--levels', type=float, nargs='+', default=[0.0, 0.3, 0.5, 0.7, 0.8, 0.9])
    parser.add_argument('--probes', type=int, default=16)
    parser.add_argument('--memo-depth', type=int, default=None, help='ForwardMemo unit depth (default: the hook\'s)')
    parser.add_argument('--layers', type=int, default=None,
                        help='time the exact estimators on this many evenly spaced layers (default: all)')
    args = parser.parse_args(argv)
    if args.memo_depth is None:
        from mmprune4u_plugin.core.memo import DEFAULT_MEMO_DEPTH
        args.memo_depth = DEFAULT_MEMO_DEPTH
    if args.memo_depth < 1 or (args.layers is not None and args.layers < 1):
        raise SystemExit('`--memo-depth` and `--layers` must be >= 1')
    import torch

    from demo_core import _batches_real, _batches_synthetic, _build
    from mmprune4u_plugin.core.curves import DistortionCurves, eval_mode, gradients_enabled
    from mmprune4u_plugin.core.estimate_exact import exact_curves
    from mmprune4u_plugin.core.estimate_fisher import fisher_curves
    from mmprune4u_plugin.core.layers import find_prunable_layers
    from mmprune4u_plugin.core.plan import AllocationSpec, allocate_layers
    from mmprune4u_plugin.core.taps import Tap
    from mmprune4u_plugin.hooks.calibration import default_task_taps, mmdet3d_forward

    torch.manual_seed(0)
    config, data_config, modalities, taps, sample = MODELS[args.model]
    if args.model == 'bevfusion-lite' and not sample.is_dir():
        raise SystemExit(f'bevfusion-lite runs on the real nuScenes keyframe {sample}, which is absent')
    os.environ.setdefault('MMPRUNE4U_SHARED_DATA', str(SHARED))
    cfg, model, datasets = _build(config)
    model.eval()
    real = sample.exists()
    if data_config is not None:
        from mmengine.config import Config
        cfg = Config.fromfile(str(REPO / 'configs' / data_config))
    batches = _batches_real(model, cfg, datasets) if real else _batches_synthetic(model)
    layers = find_prunable_layers(model, modalities=modalities)
    task_taps = default_task_taps(model)
    modality_taps = {m: Tap(t) for m, t in taps.items()}
    timed = evenly_spaced(layers, args.layers)
    grid = np.asarray(args.levels, dtype=np.float64)
    print(f'model {args.model}: {len(layers)} layers ({len(timed)} timed), '
          f'{sum(lay.numel for lay in layers):,} weights, {int((grid > 0).sum())} levels, {len(batches)} batch, '
          f'data: {"the real sample" if real else "synthetic"}, memo depth {args.memo_depth}')
    exact_task, rows = {}, []
    with eval_mode(model), torch.no_grad():
        for group in dict.fromkeys(lay.modality for lay in timed):
            members = [lay for lay in timed if lay.modality == group]
            row = dict(group=group, layers=len(members))
            for name, memoise in (('memo', True), ('plain', False)):
                start = time.perf_counter()
                task, _, st = exact_curves(model, members, grid, batches, mmdet3d_forward, task_taps=task_taps,
                                           modality_taps=modality_taps, memoise=memoise, memo_depth=args.memo_depth)
                row[name] = time.perf_counter() - start
                row[f'{name}_leaf'] = st['leaf_forwards']
                if memoise:
                    exact_task.update({lay.name: task[i] for i, lay in enumerate(members)})
                elif not np.allclose(task, np.stack([exact_task[lay.name] for lay in members]), rtol=1e-6,
                                     atol=1e-9):
                    raise SystemExit(f'the memo changed the curves of the {group} layers')
            rows.append(row)
    passes = int((grid > 0).sum()) * len(batches)
    print(f'{"exact, by group":<16} {"layers":>6} {"memo s/pass":>12} {"plain s/pass":>13} {"memo cheaper":>13} '
          f'{"leaf forwards memo / plain":>27}')
    for r in rows + [dict(group='all timed', **{k: sum(r[k] for r in rows)
                                                for k in ('layers', 'memo', 'plain', 'memo_leaf', 'plain_leaf')})]:
        n = r['layers'] * passes
        print(f'{r["group"]:<16} {r["layers"]:>6} {r["memo"] / n:>12.3f} {r["plain"] / n:>13.3f} '
              f'{r["plain"] / r["memo"]:>12.1f}x {r["memo_leaf"]:>13,} / {r["plain_leaf"]:,}')
    with eval_mode(model), gradients_enabled(model, layers):  # the task curves alone, as the exact ones above
        start = time.perf_counter()
        fisher_task, fisher_stats = fisher_curves(model, layers, grid, batches, mmdet3d_forward, task_taps=task_taps,
                                                  num_probes=args.probes)
        t_fisher = time.perf_counter() - start
    names = [lay.name for lay in layers]
    fisher = DistortionCurves(names, [lay.modality for lay in layers], [lay.numel for lay in layers], grid,
                              fisher_task, np.zeros_like(fisher_task))
    plain_all = sum(r['plain'] for r in rows) * len(layers) / len(timed)
    print(f'fisher, all layers: {t_fisher:.1f} s ({fisher_stats.get("backward_passes")} backward passes): '
          f'{plain_all / t_fisher:.1f}x cheaper than plain exact on all layers ({plain_all:.0f} s, scaled)')
    result = dict(groups=rows, fisher_seconds=t_fisher, plain_all_seconds=plain_all, passes_per_layer=passes)
    if len(timed) < len(layers):
        return result  # the agreement below needs the exact curves of every layer
    exact = DistortionCurves(names, fisher.modalities, fisher.numels, grid,
                             np.stack([exact_task[name] for name in names]), np.zeros_like(fisher_task))
    cols = slice(1, None)
    every = spearman(fisher.task[:, cols].ravel(), exact.task[:, cols].ravel())
    print(f'spearman(fisher, exact) over all (layer, level>0): {every:.3f}')
    print(f'spearman(fisher, exact) of layer sensitivity at the top level: '
          f'{spearman(fisher.task[:, -1], exact.task[:, -1]):.3f}')
    a = allocate_layers(layers, AllocationSpec(0.7, 'rd'), curves=exact)
    b = allocate_layers(layers, AllocationSpec(0.7, 'rd'), curves=fisher)
    diff = np.array([abs(a[lay.name] - b[lay.name]) for lay in layers])
    cost_a = sum(np.interp(a[lay.name], exact.grid, exact.task[i]) for i, lay in enumerate(layers))
    cost_b = sum(np.interp(b[lay.name], exact.grid, exact.task[i]) for i, lay in enumerate(layers))
    print(f'DP at 70% (RD cost): mean |s_exact - s_fisher| = {diff.mean():.3f}; exact-curve cost of the fisher '
          f'allocation / of the exact allocation = {cost_b / cost_a:.3f}')
    return result


if __name__ == '__main__':
    main()
