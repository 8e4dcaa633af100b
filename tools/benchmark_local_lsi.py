"""Cost of the layer-local regulariser R on an mmdet3d model: sampled, auto, exact (Gram) and per-level routes.

Prints the time of one calibration forward (the network up to the task taps, where the curve estimators stop their
passes; a detector's NMS after them is timed apart: on random weights it is most of BEVFusion-Lite's predict pass); of
the sampled and auto routes (``local_r``, sampled_levels.py) with
the error of their R against the exact route (relative error over every layer and level where exact R > 1e-6,
and the Spearman correlation of those layers' R at 50 / 70 / 90%); of the exact Gram path at the default grid
(100 levels), split into the calibration pass and the level sums of each layer; and of the per-level path (every
runner called again with its weight pruned to each level, as local R was measured before), timed on 1 level and on
1 + len(``--old-levels``) levels and extrapolated linearly to the grid (its cost per level is constant). Every
route's time includes turning the moments into R (what the hook pays). Checks that
the exact and per-level paths give the same moments on the levels measured by both, and prints the ratios. CPU
timings on a shared machine are noisy: the load average is printed with them.

    python tools/benchmark_local_lsi.py [--model second|bevfusion-lite|pointpillars] [--points 20000]
        [--batches 1] [--old-levels 0.5 0.9] [--threads N] [--repeats 3] [--rows 1024] [--levels 8] [--share 0.5]

``second`` is mmdet3d's own SECOND config (KITTI car, full size, random weights) on synthetic points;
``bevfusion-lite`` is this project's tiny LiDAR-camera config on the real nuScenes sample (../shared/data).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tools'))

MODELS = {
    'second': 'mmdet3d::second/second_hv_secfpn_8xb6-80e_kitti-3d-car.py',
    'pointpillars': 'pointpillars/pointpillars_tiny_8xb1-short_kitti-sample.py',
    'bevfusion-lite': 'bevfusion_lite/bevfusion-lite_tiny_lidar-cam_1xb1-short_nus-sample.py',
}


def _build(name: str, points: int, num_batches: int):
    """(model in eval mode, preprocessed batches)."""
    import mmdet3d
    import torch
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate

    import mmprune4u_plugin  # noqa: F401  (registers the plugin, applies the CPU shims)
    from mmdet3d.registry import DATASETS, MODELS as REGISTRY
    from mmdet3d.utils import register_all_modules
    register_all_modules()
    config = MODELS[name]
    path = (Path(mmdet3d.__file__).parent / '.mim' / 'configs' / config.split('::')[1] if '::' in config
            else REPO / 'configs' / config)
    cfg = Config.fromfile(str(path))
    model = REGISTRY.build(cfg.model).eval()
    if name == 'bevfusion-lite':
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        with torch.no_grad():
            return model, [model.data_preprocessor(pseudo_collate([dataset[i % len(dataset)]]), False)
                           for i in range(num_batches)]
    return model, [b for seed in range(num_batches) for b in _synthetic(model, points, seed)]


def _synthetic(model, points: int, seed: int):
    """KITTI-range random points (as tools/demo_core.py, with a chosen count)."""
    import torch
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
    gen = torch.Generator().manual_seed(seed)
    pts = torch.rand(points, 4, generator=gen) * torch.tensor([69.0, 79.0, 3.5, 1.0]) + torch.tensor([0, -39.5, -3, 0])
    sample = Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes))
    with torch.no_grad():
        return [model.data_preprocessor(dict(inputs=dict(points=[pts]), data_samples=[sample]), False)]


def _max_rel_diff(fast, ref) -> float:
    """Largest difference of the per-channel sums, relative to the dense sums' scale (as tests/core does)."""
    worst = 0.0
    for row_f, row_r in zip(fast, ref):
        for a, b in zip(row_f, row_r):
            if b.n == 0:
                continue
            ss = float(b.ss_p.max()) or 1.0
            for field, scale in (('s_q', (b.n * ss) ** 0.5), ('ss_q', ss)):
                worst = max(worst, float((getattr(a, field) - getattr(b, field)).abs().max()) / scale)
    return worst


def _r_error(approx, exact) -> str:
    """Relative error where exact R > 1e-6 (median, 90th percentile, max) and the layers' rank correlation."""
    import numpy as np
    from scipy.stats import spearmanr

    from mmprune4u_plugin.core.curves import DEFAULT_GRID
    mask = exact > 1e-6
    rel = np.abs(approx - exact)[mask] / exact[mask]
    rho = []
    for s in (0.5, 0.7, 0.9):  # layers whose R is not ~0 (a dead layer's R is rounding noise, ranked at random)
        k = DEFAULT_GRID.index(s)
        alive = exact[:, k] > 1e-6
        rho.append(spearmanr(exact[alive, k], approx[alive, k])[0])
    return (f'relative error median {np.median(rel):.3f}, p90 {np.quantile(rel, 0.9):.3f}, max {rel.max():.2f}; '
            f'Spearman at 50/70/90% {rho[0]:.3f} / {rho[1]:.3f} / {rho[2]:.3f}')


def _sampled_defaults():
    from mmprune4u_plugin.core.sampled_levels import SampledR
    return SampledR()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', choices=sorted(MODELS), default='second')
    parser.add_argument('--points', type=int, default=20000, help='synthetic points per batch (second, pointpillars)')
    parser.add_argument('--batches', type=int, default=1)
    parser.add_argument('--old-levels', type=float, nargs='+', default=[0.5, 0.9, 0.99])
    parser.add_argument('--threads', type=int, default=None, help='torch threads (default: torch default)')
    parser.add_argument('--repeats', type=int, default=3,
                        help='the forward and the sampled / auto routes: the least time of this many runs')
    defaults = _sampled_defaults()
    parser.add_argument('--rows', type=int, default=defaults.rows, help='sampled rows per layer (local_r rows)')
    parser.add_argument('--levels', type=int, default=defaults.levels,
                        help='least exactly computed levels per layer (local_r levels)')
    parser.add_argument('--share', type=float, default=defaults.share,
                        help='more exact levels while they cost at most this share of the layer (local_r share)')
    args = parser.parse_args()
    import torch

    from mmprune4u_plugin.core.curves import DEFAULT_GRID
    from mmprune4u_plugin.core.layers import find_prunable_layers, module_by_name
    import numpy as np

    from mmprune4u_plugin.core.local_lsi import layer_curve, local_lsi_curves, local_lsi_moments
    from mmprune4u_plugin.core.patches import patch_map
    from mmprune4u_plugin.core.sampled_levels import SampledR
    from mmprune4u_plugin.core.taps import TapRecorder, run_to_taps
    from mmprune4u_plugin.hooks.calibration import default_task_taps, mmdet3d_forward

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, batches = _build(args.model, args.points, args.batches)
    layers = find_prunable_layers(model)
    gram_layers = sum(patch_map(module_by_name(model, lay.runner), lay) is not None for lay in layers)
    taps = default_task_taps(model)
    def best_of(run):
        """(least time of ``--repeats`` runs, the last run's result): CPU timings on a shared machine only ever err
        upwards."""
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - start)
        return min(times), result

    with torch.no_grad():
        mmdet3d_forward(model, batches[0])  # warm-up
        predict = best_of(lambda: [mmdet3d_forward(model, batch) for batch in batches])[0] / len(batches)
        with TapRecorder(model, {str(i): tap for i, tap in enumerate(taps)}) as recorder:
            forward = best_of(lambda: [run_to_taps(model, mmdet3d_forward, batch, recorder)
                                       for batch in batches])[0] / len(batches)

    stamps = []
    start = time.perf_counter()
    fast = local_lsi_moments(model, layers, DEFAULT_GRID, batches, mmdet3d_forward,
                             progress=lambda n: stamps.append(time.perf_counter()), sample=SampledR('exact'),
                             stop_at=taps)
    exact_r = np.array([layer_curve(row) for row in fast])  # R from the moments: part of the route's cost
    new = time.perf_counter() - start
    new_pass = stamps[len(batches) - 1] - start
    per_layer = [b - a for a, b in zip(stamps[len(batches) - 1:], stamps[len(batches):])]

    old_grid = (0.0, 0.3, *args.old_levels)
    start = time.perf_counter()
    local_lsi_moments(model, layers, old_grid[:2], batches, mmdet3d_forward, use_gram=False, stop_at=taps)
    old_one = time.perf_counter() - start
    start = time.perf_counter()
    ref = local_lsi_moments(model, layers, old_grid, batches, mmdet3d_forward, use_gram=False, stop_at=taps)
    old_measured = time.perf_counter() - start
    per_level = max(0.0, old_measured - old_one) / len(args.old_levels)
    levels = sum(1 for s in DEFAULT_GRID if s > 0)
    old = old_one + per_level * (levels - 1)
    shared = [DEFAULT_GRID.index(s) for s in old_grid]
    diff = _max_rel_diff([[row[k] for k in shared] for row in fast], ref)

    nb = len(batches)
    approx = {}
    for mode in ('sampled', 'auto'):
        route = SampledR(mode, rows=args.rows, levels=args.levels, share=args.share)
        approx[mode] = best_of(lambda: local_lsi_curves(model, layers, DEFAULT_GRID, batches, mmdet3d_forward,
                                                        sample=route, stop_at=taps))
    print(f'model {args.model}: {len(layers)} layers ({gram_layers} on the Gram path), '
          f'{sum(lay.numel for lay in layers):,} weights, {nb} calibration batch(es), {torch.get_num_threads()} '
          f'torch thread(s), grid of {len(DEFAULT_GRID)} levels; sampled: {args.rows} rows, >= {args.levels} exact '
          f'levels, share {args.share}')
    print(f'one calibration forward            {forward:9.2f} s  (to the task taps; the whole predict pass with '
          f'post-processing: {predict:.2f} s)')
    for mode, (secs, r) in approx.items():
        print(f'{mode:7s} route, 100 levels          {secs:9.1f} s  = {secs / (forward * nb):6.2f} x the calibration '
              f'forwards; R vs exact: {_r_error(r, exact_r)}')
    print(f'exact (Gram), 100 levels           {new:9.1f} s  = {new / (forward * nb):6.2f} x the calibration '
          f'forwards (pass {new_pass:.1f} s, level sums {new - new_pass:.1f} s)')
    print(f'per-level path, 1 and {len(old_grid) - 1} levels    {old_one:9.1f} s, {old_measured:.1f} s '
          f'({per_level:.1f} s per level)')
    print(f'per-level path, 100 levels (extr.) {old:9.1f} s  = {old / (forward * nb):6.2f} x the calibration forwards')
    print(f'speed-up of the Gram path          {old / new:9.1f} x')
    print(f'max difference of the moments at {list(old_grid[1:])}: {diff:.2e} (relative to the dense sums)')
    print(f'load average (1, 5, 15 min) at the end: {os.getloadavg()}')
    slow = sorted(zip(per_layer, [lay.name for lay in layers]), reverse=True)[:5]
    print('slowest level sums: ' + ', '.join(f'{name} {secs:.1f} s' for secs, name in slow))


if __name__ == '__main__':
    main()
