"""Generate the synthetic nuScenes-format dataset (LiDAR sweeps, six camera images, mmdet3d 1.x info pkls).

    python tools/create_synthetic_nuscenes.py --out-dir data/synthetic_nuscenes --num-train 300 --num-val 60 \\
        --seed 0 --image-scale 0.25

The same arguments always give the same files. Load the result with mmdet3d's ``NuScenesDataset``
(``data_root=<out-dir>``, ``ann_file='nuscenes_infos_train.pkl'``, the usual ``data_prefix`` of nuScenes configs)
and evaluate with ``SyntheticNuScenesMetric``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmprune4u_plugin.datasets.synthetic_nuscenes import (  # noqa: E402
    SyntheticNuScenesConfig, generate_synthetic_nuscenes)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', default='data/synthetic_nuscenes', help='dataset root to write')
    parser.add_argument('--num-train', type=int, default=300, help='scenes in the train split')
    parser.add_argument('--num-val', type=int, default=60, help='scenes in the val split')
    parser.add_argument('--seed', type=int, default=0, help='global seed')
    parser.add_argument('--image-scale', type=float, default=0.25,
                        help='camera images are 1600x900 times this (intrinsics scaled to match)')
    parser.add_argument('--min-objects', type=int, default=10, help='fewest object placements per scene')
    parser.add_argument('--max-objects', type=int, default=30, help='most object placements per scene')
    parser.add_argument('--calib-pkl', default=None,
                        help='real nuScenes info pkl to read the calibrations from (default: the shared sample, '
                             'else the built-in copy of it)')
    parser.add_argument('--workers', type=int, default=1, help='processes (the output does not depend on it)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = SyntheticNuScenesConfig(seed=args.seed, image_scale=args.image_scale,
                                  num_objects=(args.min_objects, args.max_objects), sample_pkl=args.calib_pkl)
    out = generate_synthetic_nuscenes(args.out_dir, args.num_train, args.num_val, cfg, workers=args.workers,
                                      log=lambda msg: print(msg, flush=True))
    print(f'wrote {out["train"]} ({args.num_train} scenes) and {out["val"]} ({args.num_val} scenes) in '
          f'{out["seconds"]:.1f} s ({out["scenes_per_minute"]:.0f} scenes/min)')


if __name__ == '__main__':
    main()
