"""Cost of the curve estimators on a real mmdet3d model, and how well `fisher` agrees with `exact`.

Prints, for one model: wall time and leaf-module forwards of the memoised exact estimator vs the plain one (a full
forward for every layer, level and batch), the fisher estimator's time, the Spearman rank correlation between fisher
and exact task-distortion curves, and how far the DP's 70% allocations from the two estimators differ.

    python tools/benchmark_curves.py [--model pointpillars|mvxnet] [--levels 0 0.5 0.7 0.9] [--probes 16]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tools'))

MODELS = {
    'pointpillars': ('pointpillars/pointpillars_tiny_8xb1-short_kitti-sample.py', dict(lidar=['']), dict(lidar='neck')),
    'mvxnet': ('mvxnet/mvxnet_tiny_8xb1-short_kitti-sample.py',
               dict(camera=['img_'], fusion=['fusion_layer'], lidar=['pts_']),
               dict(camera='img_neck', lidar='pts_middle_encoder')),
}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', choices=sorted(MODELS), default='pointpillars')
    parser.add_argument('--levels', type=float, nargs='+', default=[0.0, 0.3, 0.5, 0.7, 0.8, 0.9])
    parser.add_argument('--probes', type=int, default=16)
    args = parser.parse_args()
    import torch

    from demo_core import _batches_real, _batches_synthetic, _build
    from mmprune4u_plugin.core.curves import measure_curves
    from mmprune4u_plugin.core.layers import find_prunable_layers
    from mmprune4u_plugin.core.plan import AllocationSpec, allocate_layers
    from mmprune4u_plugin.core.taps import Tap
    from mmprune4u_plugin.hooks.calibration import default_task_taps, mmdet3d_forward

    torch.manual_seed(0)
    config, modalities, taps = MODELS[args.model]
    cfg, model, datasets = _build(config)
    model.eval()
    real = (REPO.parent / 'shared' / 'data' / 'kitti-sample' / '000008.pkl').is_file()
    batches = _batches_real(model, cfg, datasets) if real else _batches_synthetic(model)
    layers = find_prunable_layers(model, modalities=modalities)
    kw = dict(task_taps=default_task_taps(model), modality_taps={m: Tap(t) for m, t in taps.items()},
              grid=tuple(args.levels))
    results = {}
    for name, extra in (('exact (memoised)', dict(memoise=True)), ('exact (plain)', dict(memoise=False)),
                        ('fisher', dict(estimator='fisher', num_probes=args.probes))):
        start = time.perf_counter()
        results[name] = (measure_curves(model, layers, batches, mmdet3d_forward, **kw, **extra),
                         time.perf_counter() - start)
    print(f'model {args.model}: {len(layers)} layers, {sum(lay.numel for lay in layers):,} weights, '
          f'{len(args.levels) - 1} levels, {len(batches)} batch, data: {"real KITTI frame" if real else "synthetic"}')
    print(f'{"estimator":<18} {"seconds":>8} {"leaf forwards":>14} {"plain would be":>15}')
    for name, (curves, secs) in results.items():
        st = curves.stats
        print(f'{name:<18} {secs:>8.1f} {st.get("leaf_forwards", "-"):>14} {st.get("plain_leaf_forwards", "-"):>15}'
              + (f'   backward passes: {st["backward_passes"]}' if 'backward_passes' in st else ''))
    exact, fisher = results['exact (memoised)'][0], results['fisher'][0]
    assert np.allclose(exact.task, results['exact (plain)'][0].task, rtol=1e-6, atol=1e-9), 'memo changed curves'
    cols = slice(1, None)
    print(f'spearman(fisher, exact) over all (layer, level>0): {spearman(fisher.task[:, cols].ravel(), exact.task[:, cols].ravel()):.3f}')
    print(f'spearman(fisher, exact) of layer sensitivity at the top level: {spearman(fisher.task[:, -1], exact.task[:, -1]):.3f}')
    a = allocate_layers(layers, AllocationSpec(0.7, 'rd'), curves=exact)
    b = allocate_layers(layers, AllocationSpec(0.7, 'rd'), curves=fisher)
    diff = np.array([abs(a[lay.name] - b[lay.name]) for lay in layers])
    cost_a = sum(np.interp(a[lay.name], exact.grid, exact.task[i]) for i, lay in enumerate(layers))
    cost_b = sum(np.interp(b[lay.name], exact.grid, exact.task[i]) for i, lay in enumerate(layers))
    print(f'DP at 70% (RD cost): mean |s_exact - s_fisher| = {diff.mean():.3f}; exact-curve cost of the fisher '
          f'allocation / of the exact allocation = {cost_b / cost_a:.3f}')


if __name__ == '__main__':
    main()
