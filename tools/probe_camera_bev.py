"""How much of the look-alike classes each sensor's BEV map carries: a linear probe at the objects' centres.

    python tools/probe_camera_bev.py CONFIG CHECKPOINT [--scenes 120] [--radius 2] [--cfg-options ...]

The synthetic nuScenes-format data gives three pairs of classes the same size distribution and LiDAR reflectivity
(truck / construction_vehicle, bus / trailer, motorcycle / bicycle, :mod:`mmprune4u_plugin.datasets.scene_sampler`):
only the cameras tell them apart. A fused model can beat LiDAR-only only if the camera BEV map that reaches the
fuser carries that difference. This tool reads each branch's BEV map (``extract_img_bev`` / ``extract_pts_bev``) of
the train split's first ``--scenes`` scenes, averages it over a ``(2r+1)^2`` window around each look-alike object's
centre, and fits an L2-regularised logistic regression for "which of its pair" (features standardised, plus the
pair's one-hot) on the first 60% of the scenes. It prints the accuracy on the other 40% beside chance (the
majority). The LiDAR map is the control: by construction it should stay at chance.
"""
from __future__ import annotations

import argparse

import torch
from _launch import load_config
from mmengine.config import DictAction

PAIR_BIT = {'truck': 0, 'construction_vehicle': 1, 'bus': 0, 'trailer': 1, 'motorcycle': 0, 'bicycle': 1}
PAIR_OF = {'truck': 0, 'construction_vehicle': 0, 'bus': 1, 'trailer': 1, 'motorcycle': 2, 'bicycle': 2}


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, steps: int = 200) -> torch.Tensor:
    """Weights (with the bias last) of ``sigmoid(x @ w[:-1] + w[-1])`` minimising the mean log loss + ``l2 |w|^2``."""
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    w = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    optim = torch.optim.LBFGS([w], max_iter=steps, line_search_fn='strong_wolfe')

    def closure():
        optim.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w, y) + l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    optim.step(closure)
    return w.detach()


def accuracy(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((((x @ w[:-1] + w[-1]) > 0).to(y.dtype) == y).double().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='loaded non-strictly (a camera-branch pretraining checkpoint works too)')
    parser.add_argument('--scenes', type=int, default=120, help='train-split scenes read (60%% fit, 40%% scored)')
    parser.add_argument('--radius', type=int, default=2, help='window half-size in BEV cells around each centre')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='key=value overrides of the config')
    args = parser.parse_args()
    args.work_dir, args.launcher, args.local_rank = None, 'none', 0
    cfg = load_config(args)
    from mmdet3d.registry import DATASETS, MODELS
    from mmdet3d.utils import register_all_modules
    from mmengine.dataset import pseudo_collate
    from mmengine.runner import load_checkpoint
    register_all_modules(init_default_scope=True)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=False)
    model.eval()
    dataset_cfg = cfg.train_dataloader.dataset
    dataset = DATASETS.build(dataset_cfg.get('dataset', dataset_cfg))
    classes = dataset.metainfo['classes']
    x_min, y_min, _, x_max = cfg.point_cloud_range[:4]
    branches = {'camera': model.with_camera, 'lidar': model.with_lidar}
    feats: dict[str, list[torch.Tensor]] = {name: [] for name, on in branches.items() if on}
    bits, pairs, fit = [], [], []
    r = args.radius
    scenes = min(args.scenes, len(dataset))
    with torch.no_grad():
        for i in range(scenes):
            batch = model.data_preprocessor(pseudo_collate([dataset[i]]), False)
            inputs, samples = batch['inputs'], batch['data_samples']
            maps = {}
            if model.with_camera:
                maps['camera'] = model.extract_img_bev(inputs['imgs'], [s.metainfo for s in samples])[0]
            if model.with_lidar:
                maps['lidar'] = model.extract_pts_bev(inputs['voxels'], 1)[0]
            height, width = next(iter(maps.values())).shape[-2:]  # rows y, columns x over the point cloud range
            cell = (x_max - x_min) / width
            gt = samples[0].gt_instances_3d
            for (x, y), label in zip(gt.bboxes_3d.gravity_center[:, :2].tolist(), gt.labels_3d.tolist()):
                name = classes[label]
                ix, iy = int((x - x_min) // cell), int((y - y_min) // cell)
                if name not in PAIR_BIT or not (r <= ix < width - r and r <= iy < height - r):
                    continue
                for key, bev in maps.items():
                    feats[key].append(bev[:, iy - r:iy + r + 1, ix - r:ix + r + 1].mean((1, 2)).double())
                bits.append(PAIR_BIT[name])
                pairs.append(PAIR_OF[name])
                fit.append(i < 0.6 * scenes)
    if not bits:
        raise SystemExit('no look-alike objects inside the BEV grid in the scenes read')
    y = torch.tensor(bits, dtype=torch.float64)
    fit_mask = torch.tensor(fit)
    if fit_mask.all() or not fit_mask.any():
        raise SystemExit(f'{scenes} scenes leave no objects to fit or to score: raise `--scenes`')
    onehot = torch.eye(3, dtype=torch.float64)[torch.tensor(pairs)]
    held = y[~fit_mask]
    chance = max(float(held.mean()), 1 - float(held.mean()))
    print(f'{len(y)} look-alike objects in {scenes} scenes; fit on {int(fit_mask.sum())}, scored on '
          f'{int((~fit_mask).sum())} (chance {chance:.3f}); window {2 * r + 1}x{2 * r + 1} cells of {cell:g} m')
    for key, rows in feats.items():
        x = torch.cat([torch.stack(rows), onehot], 1)
        mean, std = x[fit_mask].mean(0), x[fit_mask].std(0).clamp_min(1e-6)
        x = (x - mean) / std
        w = fit_logistic(x[fit_mask], y[fit_mask])
        print(f'{key:>7} BEV: fit accuracy {accuracy(w, x[fit_mask], y[fit_mask]):.3f}, held-out accuracy '
              f'{accuracy(w, x[~fit_mask], held):.3f}')


if __name__ == '__main__':
    main()
