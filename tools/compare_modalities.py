"""Fused LiDAR-camera vs LiDAR-only vs camera-only BEVFusion-Lite tiny, same seed and training budget (CPU).

Trains the three demo configs on the synthetic nuScenes-format set (generated if absent), evaluates each on the val
split with nuscenes-devkit's metrics and writes ``<work-dir>/modalities.md`` and ``modalities.json``. This is the
check that the synthetic data needs both sensors: the fused model should beat both single-sensor models.
About 6-7 min per model on 2 quiet CPU cores; stages are cached like ``make demo``'s.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from _stages import DATA, REPO, data_root_options, ensure_synthetic_data, evaluate, metric, train

VARIANTS = {
    'lidar-camera': 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py',
    'lidar': 'configs/demo/bevfusion-lite_tiny_lidar_demo_synthetic-nus.py',
    'camera': 'configs/demo/bevfusion-lite_tiny_cam_demo_synthetic-nus.py',
}
KEYS = ['NDS', 'mAP', 'mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=str(REPO / 'work_dirs' / 'modalities'))
    parser.add_argument('--iters', type=int, default=None, help='override train_cfg.max_iters for all three')
    parser.add_argument('--seed', type=int, default=0, help='randomness.seed of all three runs')
    parser.add_argument('--data-root', default=str(DATA), help='synthetic set (generated here if absent)')
    parser.add_argument('--num-train', type=int, default=200, help='train scenes when the set is generated')
    parser.add_argument('--num-val', type=int, default=40, help='val scenes when the set is generated')
    args = parser.parse_args()
    out = Path(args.work_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_root = Path(args.data_root)
    ensure_synthetic_data(out / 'data.log', data_root, args.num_train, args.num_val)
    data_options = [] if data_root.resolve() == DATA.resolve() else data_root_options(data_root)
    options = [f'randomness.seed={args.seed}', *data_options]
    if args.iters is not None:
        options += [f'train_cfg.max_iters={args.iters}', f'param_scheduler.0.T_max={args.iters}',
                    f'param_scheduler.0.end={args.iters}']
    results = {}
    for name, config in VARIANTS.items():
        ckpt = train(f'train {name}', config, out / name, out / f'{name}.log', '--cfg-options', *options)
        test_options = ['--cfg-options', *data_options] if data_options else []
        results[name] = evaluate(name, config, ckpt, out, *test_options)
    lines = ['| model | ' + ' | '.join(KEYS) + ' |', '|---' * (len(KEYS) + 1) + '|']
    lines += [f'| {name} | ' + ' | '.join(f'{metric(r, k):.4f}' for k in KEYS) + ' |' for name, r in results.items()]
    (out / 'modalities.md').write_text('\n'.join(lines) + '\n')
    (out / 'modalities.json').write_text(json.dumps({'seed': args.seed, 'iters': args.iters, 'data_root': str(data_root),
                                                     'results': results}, indent=1))
    print('\n'.join(lines))
    best_single = max(metric(results['lidar'], 'NDS'), metric(results['camera'], 'NDS'))
    print(f'fused NDS {metric(results["lidar-camera"], "NDS"):.4f} vs best single sensor {best_single:.4f}')


if __name__ == '__main__':
    main()
