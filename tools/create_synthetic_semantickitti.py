"""Generate the synthetic SemanticKITTI-format dataset (64-beam scans, point labels, front camera, info pkls).

    python tools/create_synthetic_semantickitti.py --out-dir data/synthetic_semantickitti --frames 20 --seed 0 \\
        --train-seqs 0-7,9,10 --val-seqs 8 --test-seqs 11-13 --workers 2

The same arguments always give the same files. Load the result with mmdet3d's ``SemanticKittiDataset``
(``data_root=<out-dir>``, ``ann_file='semantickitti_infos_train.pkl'``, the pipeline and metainfo of
``mmdet3d::_base_/datasets/semantickitti.py``) and evaluate with ``SegMetric``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmprune4u_plugin.datasets.synthetic_semantickitti import (  # noqa: E402
    SyntheticSemanticKittiConfig, generate_synthetic_semantickitti, hdl64e)


def parse_seqs(text: str) -> tuple:
    """'0-7,9,10' -> (0, 1, 2, 3, 4, 5, 6, 7, 9, 10); '' -> ()."""
    out = []
    for part in filter(None, text.split(',')):
        lo, _, hi = part.partition('-')
        out.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(out)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', default='data/synthetic_semantickitti', help='dataset root to write')
    parser.add_argument('--train-seqs', default='0-7,9,10', help='sequences of the train split')
    parser.add_argument('--val-seqs', default='8', help='sequences of the val split')
    parser.add_argument('--test-seqs', default='11-13', help='sequences of the test split')
    parser.add_argument('--frames', type=int, default=20, help='scans per sequence')
    parser.add_argument('--frame-step', type=float, default=12.0, help='metres driven between two scans')
    parser.add_argument('--seed', type=int, default=0, help='global seed')
    parser.add_argument('--image-scale', type=float, default=0.5,
                        help='images are 1242x375 times this (P0..P3 scaled to match)')
    parser.add_argument('--azimuth-steps', type=int, default=1024,
                        help='LiDAR azimuth steps per turn (the real HDL-64E has about 2083)')
    parser.add_argument('--workers', type=int, default=1, help='processes (the output does not depend on it)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = SyntheticSemanticKittiConfig(seed=args.seed, frames=args.frames, frame_step=args.frame_step,
                                       image_scale=args.image_scale, lidar=hdl64e(args.azimuth_steps))
    splits = {name: parse_seqs(getattr(args, f'{name}_seqs')) for name in ('train', 'val', 'test')}
    out = generate_synthetic_semantickitti(args.out_dir, splits, cfg, workers=args.workers,
                                           log=lambda msg: print(msg, flush=True))
    for name, seqs in splits.items():
        print(f'wrote {out[name]} ({len(seqs)} sequences x {args.frames} scans)')
    print(f'{out["seconds"]:.1f} s ({out["seconds_per_scan"]:.2f} s/scan)')


if __name__ == '__main__':
    main()
