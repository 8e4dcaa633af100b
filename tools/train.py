"""Train (and prune, with MMPrune4UHook in the config) an mmdet3d model: the same CLI as mmdet3d's tools/train.py."""
from __future__ import annotations

from _launch import build_runner, common_parser, load_config


def main() -> None:
    parser = common_parser('Train a 3D detector / segmentor (with the mmprune4u plugin)')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision training')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from a checkpoint, or from the latest one in work_dir when no path is given')
    args = parser.parse_args()
    cfg = load_config(args)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
