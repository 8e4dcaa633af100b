"""Write a fused LiDAR-camera checkpoint from LiDAR-only (and camera-only) checkpoints, for ``load_from``.

    python tools/init_fused_from_single.py FUSED_CONFIG --lidar LIDAR.pth [--camera CAMERA.pth] --out FUSED_INIT.pth

The fused model starts as the LiDAR-only model (the camera slice of the fuser kernel is zero); see
mmprune4u_plugin/models/fusion_init.py. Prints where every weight came from.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _launch import load_config


def _state(path: str) -> dict:
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    return ckpt.get('state_dict', ckpt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the fused model config')
    parser.add_argument('--lidar', required=True, help='LiDAR-only checkpoint')
    parser.add_argument('--camera', help='camera-only checkpoint (default: the camera branch starts from its init)')
    parser.add_argument('--out', required=True)
    parser.add_argument('--fuser-weight', default='fusion_layer.conv.conv.weight')
    args = parser.parse_args()
    for path in (args.lidar, args.camera):
        if path is not None and not Path(path).is_file():
            raise SystemExit(f'checkpoint {path} does not exist')
    args.work_dir, args.cfg_options, args.launcher, args.local_rank = None, {}, 'none', 0
    cfg = load_config(args)
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules

    from mmprune4u_plugin.models.fusion_init import fused_state_dict
    register_all_modules(init_default_scope=True)
    from mmengine.logging import MMLogger
    model = MODELS.build(cfg.model)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs every parameter
    model.init_weights()
    logger.setLevel(level)
    camera_channels = cfg.model.fusion_layer.in_channels[0]
    state, origin = fused_state_dict(model.state_dict(), _state(args.lidar),
                                     _state(args.camera) if args.camera else None, args.fuser_weight,
                                     camera_channels)
    model.load_state_dict(state)  # strict: the result is exactly the fused model's state dict
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': state, 'meta': {'fused_from': {'lidar': args.lidar, 'camera': args.camera}}},
               args.out)
    for name, keys in origin.items():
        prefixes = sorted({k.split('.')[0] for k in keys})
        print(f'{name:9s} {len(keys):4d} tensors  {", ".join(prefixes)}')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
