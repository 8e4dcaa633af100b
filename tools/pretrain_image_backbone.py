"""Pretrain BEVFusion-Lite's camera branch on a 2D task of the synthetic renderings, for ``load_from``.

    python tools/pretrain_image_backbone.py CONFIG --ann-file data/synthetic_nuscenes/nuscenes_infos_train.pkl \\
        --out work_dirs/img_pretrain/img_pretrain.pth [--iters 600 --views 8 --lr 2e-3 --seed 0]

BEVFusion starts its camera branch from an ImageNet / nuImages backbone; nothing can be downloaded here, and a
ResNet trained from scratch inside a few hundred detector iterations learns next to nothing (camera-only NDS ~0.02).
The synthetic renderer knows what every pixel shows, so the branch is pretrained on the train split's images with
dense targets (:meth:`SceneGenerator.image_labels`, the same scenes re-rasterised, nothing written):

- semantic segmentation: the class of the object each pixel sees, or background (ground, sky), by a small head on
  the image neck's stride-8 map, upsampled to the input size;
- depth: the bin (the view transform's ``dbound``) of the nearest surface in each stride-8 feature cell, as the
  LiDAR depth supervision does it, predicted by the view transform's own ``depthnet`` (its depth slice).

Input images go through the config's test-time ``MultiViewImageResizeCrop`` and the data preprocessor's
normalisation, so the network sees exactly what it sees in the detector. The checkpoint holds ``img_backbone.*``,
``img_neck.*`` and ``view_transform.depthnet.*`` of the camera branch (``state_dict``, the keys of the detector):
``load_from`` it (mmengine loads non-strictly, the other modules keep their init).
"""
from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _launch import load_config
from torch import nn

KEEP = ('img_backbone.', 'img_neck.', 'view_transform.depthnet.')


def generator_for(ann_file: str | Path):
    """The labels-only :class:`SceneGenerator` that wrote ``ann_file``'s scenes, its split name and its infos;
    checked against the infos' camera intrinsics."""
    from mmprune4u_plugin.datasets.synthetic_nuscenes import SceneGenerator
    with open(ann_file, 'rb') as f:
        infos = pickle.load(f)
    gen = SceneGenerator.from_metainfo(infos['metainfo'])
    for info in infos['data_list'][:1]:
        for cam, img in info['images'].items():
            if not np.allclose(img['cam2img'], gen.calib[cam]['cam2img']):
                raise ValueError(f'{ann_file}: {cam} intrinsics differ from the rebuilt generator\'s')
    return gen, infos['metainfo']['synthetic']['split'], infos['data_list']


def resize_crop(array: np.ndarray, final_size, interpolation: str) -> np.ndarray:
    """The detector's test-time ``MultiViewImageResizeCrop`` (fit the width, keep the bottom) on one map."""
    from mmprune4u_plugin.datasets.transforms import MultiViewImageResizeCrop
    op = MultiViewImageResizeCrop(final_size=final_size, interpolation=interpolation)
    return op._view(array, op._scale(array.shape[1]))[0]


def cell_depth_bins(depth: np.ndarray, feature_size, dbound) -> np.ndarray:
    """``(fH, fW)`` bin of the nearest surface in each feature cell of a ``(H, W)`` depth map (-1: none in range).

    Same rule as :meth:`LSSViewTransform.depth_targets` with the LiDAR points replaced by every pixel: cell
    ``(i, j)`` covers pixels ``[s i, s (i + 1)) x [s j, s (j + 1))``; depths outside ``[dmin, dmax)`` (and 0, the
    zero padding) are ignored; bin ``floor((d - dmin) / step)``.
    """
    (height, width), (feat_h, feat_w) = depth.shape, feature_size
    dmin, dmax, dstep = dbound
    d = np.where((depth >= dmin) & (depth < dmax), depth, np.inf)
    nearest = d.reshape(feat_h, height // feat_h, feat_w, width // feat_w).min(axis=(1, 3))
    num_bins = int(round((dmax - dmin) / dstep))
    bins = np.minimum(np.floor((nearest - dmin) / dstep), num_bins - 1)
    return np.where(np.isfinite(nearest), bins, -1).astype(np.int64)


def scene_views(data_root: Path, info: dict, labels: dict, image_size, feature_size, dbound, num_classes: int):
    """One scene's network inputs and targets: BGR images ``(N, H, W, 3)`` uint8, per-pixel classes ``(N, H, W)``
    (``num_classes`` = background) and per-cell depth bins ``(N, fH, fW)``."""
    import cv2
    imgs, classes, bins = [], [], []
    for cam, (cls_map, depth) in labels.items():
        img = cv2.imread(str(data_root / 'samples' / cam / info['images'][cam]['img_path']))
        imgs.append(resize_crop(img, image_size, 'area'))
        cls = np.where(cls_map < 0, num_classes, cls_map).astype(np.uint8)
        classes.append(resize_crop(cls, image_size, 'nearest'))
        depth = resize_crop(np.where(np.isfinite(depth), depth, 0).astype(np.float32), image_size, 'nearest')
        bins.append(cell_depth_bins(depth, feature_size, dbound))
    return np.stack(imgs), np.stack(classes).astype(np.int64), np.stack(bins)


class PretrainNet(nn.Module):
    """The detector's camera modules plus two discarded classifiers; depth from ``view_transform.depthnet``.

    ``seg_head`` segments the neck's map. ``context_cls`` is a linear 1x1 classifier on the context channels that
    the view transform lifts to BEV: with it, the class is linearly readable from exactly what reaches the fuser.
    Without it those channels are an untrained 1x1 conv of the neck's map, and the detector must learn what they
    carry from the 3D boxes alone: a linear probe of the fused model's camera BEV then tells the look-alike classes
    apart only 62-66% of the time (chance 52%; tools/probe_camera_bev.py).
    """

    def __init__(self, detector: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.img_backbone, self.img_neck = detector.img_backbone, detector.img_neck
        self.depthnet, self.num_depth = detector.view_transform.depthnet, detector.view_transform.num_depth
        channels = self.depthnet.in_channels
        self.seg_head = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                      nn.Conv2d(channels, num_classes + 1, 1))
        self.context_cls = nn.Conv2d(self.depthnet.out_channels - self.num_depth, num_classes + 1, 1)

    def forward(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(segmentation logits at input size, depth logits, context-channel class logits at input size)."""
        x = self.img_neck(self.img_backbone(imgs))
        x = x if isinstance(x, torch.Tensor) else x[0]
        size = imgs.shape[-2:]
        seg = F.interpolate(self.seg_head(x), size=size, mode='bilinear', align_corners=False)
        depth_context = self.depthnet(x)
        context_seg = F.interpolate(self.context_cls(depth_context[:, self.num_depth:]), size=size,
                                    mode='bilinear', align_corners=False)
        return seg, depth_context[:, :self.num_depth], context_seg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a BEVFusion-Lite config with the camera branch (its model and image size)')
    parser.add_argument('--ann-file', required=True, help='info pkl of a synthetic split (the images beside it)')
    parser.add_argument('--out', required=True, help='checkpoint to write')
    parser.add_argument('--iters', type=int, default=600)
    parser.add_argument('--views', type=int, default=8, help='camera images per step (random over the split)')
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--background-weight', type=float, default=0.2,
                        help='cross-entropy weight of the background class (objects cover few pixels)')
    parser.add_argument('--context-weight', type=float, default=1.0,
                        help='weight of the segmentation loss read linearly from the lifted context channels '
                             '(0: the context channels are not pretrained)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    if args.iters < 1 or args.views < 1:
        raise SystemExit(f'`--iters` and `--views` must be >= 1, but got iters: {args.iters}, views: {args.views}')
    ann_file = Path(args.ann_file)
    args.work_dir, args.cfg_options, args.launcher, args.local_rank = None, {}, 'none', 0
    cfg = load_config(args)
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules
    from mmengine.logging import MMLogger
    register_all_modules(init_default_scope=True)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    detector = MODELS.build(cfg.model)
    if detector.img_backbone is None:
        raise SystemExit(f'{args.config} has no camera branch')
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs every parameter
    detector.init_weights()
    logger.setLevel(level)
    vt = detector.view_transform
    num_classes = len(cfg.class_names)
    image_size, feature_size, dbound = vt.image_size, vt.feature_size, vt.dbound

    start = time.time()
    gen, split, infos = generator_for(ann_file)
    imgs, classes, bins = [], [], []
    for info in infos:
        views = scene_views(ann_file.parent, info, gen.image_labels(split, info['sample_idx']), image_size,
                            feature_size, dbound, num_classes)
        for store, value in zip((imgs, classes, bins), views):
            store.append(value)
    imgs, classes, bins = (torch.from_numpy(np.concatenate(x)) for x in (imgs, classes, bins))
    freq = torch.bincount(classes.flatten(), minlength=num_classes + 1).double()
    print(f'{len(imgs)} views of {len(infos)} {split} scenes with targets in {time.time() - start:.0f} s; object '
          f'pixels {1 - freq[-1] / freq.sum():.3f}; depth-supervised cells {(bins >= 0).double().mean():.3f}',
          flush=True)

    prep = cfg.model.data_preprocessor
    mean, std = (torch.tensor(prep[k], dtype=torch.float32).view(1, 3, 1, 1) for k in ('mean', 'std'))
    net = PretrainNet(detector, num_classes).train()
    optim = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=args.iters, eta_min=args.lr * 0.05)
    weight = torch.ones(num_classes + 1)
    weight[-1] = args.background_weight
    gen_rng = torch.Generator().manual_seed(args.seed)
    start = time.time()
    for it in range(1, args.iters + 1):
        idx = torch.randint(len(imgs), (args.views, ), generator=gen_rng)
        x = imgs[idx].permute(0, 3, 1, 2).float().flip(1)  # BGR -> RGB, as bgr_to_rgb=True
        seg, depth, context_seg = net((x - mean) / std)
        loss_seg = F.cross_entropy(seg, classes[idx], weight=weight)
        loss_context = F.cross_entropy(context_seg, classes[idx], weight=weight)
        target = bins[idx]
        loss_depth = F.cross_entropy(depth.permute(0, 2, 3, 1)[target >= 0], target[target >= 0])
        optim.zero_grad()
        (loss_seg + loss_depth + args.context_weight * loss_context).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 35.0)
        optim.step()
        sched.step()
        if it % 25 == 0 or it == args.iters:
            with torch.no_grad():
                pred = seg.argmax(1)
                obj = classes[idx] < num_classes
                acc = (pred[obj] == classes[idx][obj]).float().mean().item() if obj.any() else float('nan')
                context_pred = context_seg.argmax(1)
                context_acc = ((context_pred[obj] == classes[idx][obj]).float().mean().item() if obj.any()
                               else float('nan'))
            print(f'iter {it}/{args.iters}  loss_seg {loss_seg.item():.4f}  loss_context {loss_context.item():.4f}  '
                  f'loss_depth {loss_depth.item():.4f}  object-pixel acc {acc:.3f} (context {context_acc:.3f})  '
                  f'{(time.time() - start) / it:.2f} s/iter', flush=True)
    state = {k: v for k, v in detector.state_dict().items() if k.startswith(KEEP)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': state, 'meta': dict(pretrained_on=str(ann_file), iters=args.iters, views=args.views,
                                                  lr=args.lr, seed=args.seed, context_weight=args.context_weight,
                                                  task='segmentation + depth bins + context segmentation')},
               out)
    print(f'wrote {out} ({len(state)} tensors: {", ".join(KEEP)})')


if __name__ == '__main__':
    main()
