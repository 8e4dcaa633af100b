"""MMPrune4U on a real mmdet3d zoo model (core only, no training), on CPU: `python tools/demo_core.py`.

MVX-Net (LiDAR + camera, shrunk zoo config) on the real KITTI frame in ../shared/data when it is there; otherwise
PointPillars with random weights on synthetic points. Measures exact distortion curves (memoised), allocates 70%
sparsity with the DP (MMPrune4U: task distortion + log-Sobolev regulariser; and RD for comparison), applies the
masks, checks the pruned model still runs, and prints the per-layer allocation and the reached sparsity. The report
(json, table, plots) goes to ``work_dirs/demo_core``. (The full prune -> finetune -> evaluate demo on synthetic
nuScenes-format data is a later milestone.)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _build(config: str):
    from mmengine.config import Config

    import mmprune4u_plugin  # noqa: F401
    from mmdet3d.registry import DATASETS, MODELS
    from mmdet3d.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(str(REPO / 'configs' / config))
    return cfg, MODELS.build(cfg.model), DATASETS


def _batches_real(model, cfg, datasets):
    from mmengine.dataset import pseudo_collate
    dataset = datasets.build(cfg.train_dataloader.dataset)
    return [model.data_preprocessor(pseudo_collate([dataset[0]]), False)]


def _batches_synthetic(model, seed: int = 0):
    import torch
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
    gen = torch.Generator().manual_seed(seed)
    n = 20000
    pts = torch.rand(n, 4, generator=gen) * torch.tensor([69.0, 79.0, 3.5, 1.0]) + torch.tensor([0.0, -39.5, -3.0, 0])
    sample = Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes))
    return [model.data_preprocessor(dict(inputs=dict(points=[pts]), data_samples=[sample]), False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sparsity', type=float, default=0.7)
    parser.add_argument('--beta', type=float, default=1.0)
    parser.add_argument('--work-dir', default=str(REPO / 'work_dirs' / 'demo_core'))
    args = parser.parse_args()
    import torch

    from mmprune4u_plugin.core.curves import measure_curves
    from mmprune4u_plugin.core.layers import find_prunable_layers
    from mmprune4u_plugin.core.plan import AllocationSpec, allocate_layers
    from mmprune4u_plugin.core.pruner import Pruner
    from mmprune4u_plugin.core.taps import Tap
    from mmprune4u_plugin.hooks.calibration import default_task_taps, mmdet3d_forward
    from mmprune4u_plugin.hooks.report import write_report

    torch.manual_seed(0)
    real = (REPO.parent / 'shared' / 'data' / 'kitti-sample' / '000008.pkl').is_file()
    if real:
        print('[demo] MVX-Net (LiDAR + camera, shrunk) on the real KITTI frame 000008')
        cfg, model, datasets = _build('mvxnet/mvxnet_tiny_8xb1-short_kitti-sample.py')
        modalities = dict(camera=['img_'], fusion=['fusion_layer'], lidar=['pts_'])
        taps = dict(camera=Tap('img_neck'), lidar=Tap('pts_middle_encoder'))
    else:
        print('[demo] ../shared/data is absent: PointPillars (random weights) on synthetic points')
        cfg, model, datasets = _build('pointpillars/pointpillars_tiny_8xb1-short_kitti-sample.py')
        modalities, taps = dict(lidar=['']), dict(lidar=Tap('neck'))
    model.eval()
    batches = _batches_real(model, cfg, datasets) if real else _batches_synthetic(model)
    layers = find_prunable_layers(model, modalities=modalities)
    print(f'[demo] {len(layers)} prunable layers, {sum(lay.numel for lay in layers):,} weights')
    grid = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
    start = time.time()
    curves = measure_curves(model, layers, batches, mmdet3d_forward, task_taps=default_task_taps(model),
                            modality_taps=taps, grid=grid, progress=_progress)
    saved = 1 - curves.stats['leaf_forwards'] / curves.stats['plain_leaf_forwards']
    print(f'[demo] exact curves in {time.time() - start:.1f} s; memoisation skipped {saved:.0%} of leaf-module '
          f'forwards ({curves.stats})')
    alloc = {name: allocate_layers(layers, AllocationSpec(args.sparsity, name, beta=args.beta), curves=curves)
             for name in ('mmprune4u', 'rd')}
    pruner = Pruner(layers)
    pruner.prepare(model)
    pruner.set_sparsities(alloc['mmprune4u'])
    report = pruner.report()
    print(f'\n{"layer":<48} {"modality":<8} {"weights":>8} {"MMPrune4U":>9} {"RD":>6}')
    for lay in layers:
        print(f'{lay.name:<48} {lay.modality:<8} {lay.numel:>8} {alloc["mmprune4u"][lay.name]:>9.3f} '
              f'{alloc["rd"][lay.name]:>6.3f}')
    for m, (n, z, s) in report.by_modality().items():
        print(f'[demo] modality {m:<7} {n:>9,} weights, sparsity {s:.4f}')
    print(f'[demo] reached global sparsity {report.global_sparsity:.6f} (target {args.sparsity}; '
          f'{report.zeros:,} of {report.total:,} weights are zero)')
    with torch.no_grad():
        out = mmdet3d_forward(model, batches[0])
    boxes = out[0].pred_instances_3d.bboxes_3d.tensor
    print(f'[demo] pruned model runs: {len(boxes)} boxes, all finite: {bool(torch.isfinite(boxes).all())}')
    paths = write_report(args.work_dir, layers, alloc['mmprune4u'], report, curves=curves,
                         costs=curves.cost(args.beta, target=args.sparsity), meta={'target': args.sparsity, 'allocator': 'mmprune4u'})
    print(f'[demo] report: {", ".join(str(p) for p in paths.values())}')


def _progress(description: str, total: int):
    from mmengine.utils import ProgressBar
    print(f'[demo] {description}')
    bar = ProgressBar(total)
    return lambda n: [bar.update() for _ in range(n)]


if __name__ == '__main__':
    main()
