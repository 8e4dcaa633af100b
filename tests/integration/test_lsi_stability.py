"""LogSobolevLoss stays finite and bounded through SGD finetuning of pruned real models (issue: it diverged).

BEVFusion-Lite tiny (nuScenes keyframe) and MVX-Net tiny (KITTI frame); random and briefly trained weights;
lambda in {0.1, 1, 10}; five seeds (each a different random model and calibration of the pruning), 30 SGD steps
each, no seed chosen to pass. The bound: every channel's smoothed LSI term is at most what a killed channel costs
plus the mean shift over the smoothing variance, and the default form trains on log(1 + B), so the loss of a healthy
run stays far below ``BOUND_PER_TENSOR`` per tapped tensor and unit of lambda; a diverging run (the old loss went
9e-15 -> 3e3 -> 1e8 -> NaN) does not. Marked slow: 3-5 s per SGD step on 2 CPU cores (the default run has the same
matrix on a small model, tests/hooks/test_lsi_finetune_stability.py).
"""
import copy
import math

import numpy as np
import pytest
import torch

from zoo import build_from_config, require_sample

pytest.importorskip('mmdet3d')
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmdet3d.registry import MODELS as MODEL_REGISTRY  # noqa: E402

from mmprune4u_plugin.core.layers import find_prunable_layers  # noqa: E402
from mmprune4u_plugin.core.pruner import Pruner  # noqa: E402
from mmprune4u_plugin.core.taps import Tap  # noqa: E402
from mmprune4u_plugin.hooks.calibration import mmdet3d_forward  # noqa: E402
from mmprune4u_plugin.hooks.lsi_finetune import LSIFinetuner, dense_statistics  # noqa: E402
from mmprune4u_plugin.losses import LogSobolevLoss  # noqa: E402

MODELS = {
    'bevfusion_lite': ('nuscenes-v1.0-mini-sample', 'bevfusion_lite/bevfusion-lite_tiny_lidar-cam_1xb1-short_nus-sample.py',
                       dict(camera=Tap('view_transform'), lidar=Tap('pts_middle_encoder'))),
    'mvxnet': ('kitti-sample', 'mvxnet/mvxnet_tiny_8xb1-short_kitti-sample.py',
               dict(camera=Tap('img_neck'), lidar=Tap('pts_middle_encoder'))),
}
LAMBDAS = (0.1, 1.0, 10.0)
SEEDS = range(5)
STEPS = 30
TRAIN_STEPS = 10
BOUND_PER_TENSOR = math.log1p(1e4)  # channel mean of log(1 + B) per tapped tensor, B = 1e4: far beyond a killed channel


def _total(losses: dict) -> torch.Tensor:
    return sum(v if isinstance(v, torch.Tensor) else sum(v) for k, v in losses.items() if 'loss' in k)


def _sgd(model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-2)


def _finetune(model, pruner, taps, stats, lam, batch) -> list[float]:
    finetuner = LSIFinetuner(model, taps, LogSobolevLoss(loss_weight=lam), reference='dense_stats', dense_stats=stats)
    optimizer = _sgd(model)
    values = []
    try:
        for _ in range(STEPS):
            losses = model.loss(batch['inputs'], batch['data_samples'])
            values.append(float(losses['loss_lsi']))
            optimizer.zero_grad()
            _total(losses).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 35)  # the configs' clip_grad
            optimizer.step()
            pruner.apply()
    finally:
        finetuner.remove()
    return values


def _shrunk(name: str):
    """(config, one collated sample): the tiny config with smaller images and fewer points (faster steps; the
    loss's conditioning does not depend on the input size)."""
    from mmengine.config import Config

    from mmdet3d.registry import DATASETS
    from zoo import REPO
    sample, config, _ = MODELS[name]
    require_sample(sample)
    build_from_config(config)  # registers the plugin and mmdet3d's modules
    cfg = Config.fromfile(str(REPO / 'configs' / config))
    if name == 'bevfusion_lite':
        cfg.model.view_transform.update(image_size=[64, 192], feature_size=[8, 24])
        dataset_cfg = cfg.train_dataloader.dataset.dataset
        for step in dataset_cfg.pipeline:
            if step['type'] == 'MultiViewImageResizeCrop':
                step["final_size"] = [64, 192]
    else:
        dataset_cfg = cfg.train_dataloader.dataset.dataset
        for step in dataset_cfg.pipeline:
            if step['type'] == 'Resize':
                step['scale'] = (320, 96)
    dataset_cfg.pipeline.insert(-1, dict(type='PointSample', num_points=4096))
    return cfg, pseudo_collate([DATASETS.build(dataset_cfg)[0]])


def _check(name: str, weights: str, lambdas) -> None:
    cfg, data = _shrunk(name)
    taps = MODELS[name][2]
    worst = {}
    for seed in SEEDS:
        torch.manual_seed(seed)  # seeds are swept, not picked: every one must pass
        fresh = MODEL_REGISTRY.build(cfg.model)  # a different random model per seed
        fresh.train()
        batch = fresh.data_preprocessor(data, True)
        if weights == 'trained':
            optimizer = _sgd(fresh)
            for _ in range(TRAIN_STEPS):
                optimizer.zero_grad()
                _total(fresh.loss(batch['inputs'], batch['data_samples'])).backward()
                torch.nn.utils.clip_grad_norm_(fresh.parameters(), 35)
                optimizer.step()
        stats = dense_statistics(fresh, taps, [fresh.data_preprocessor(data, False)], mmdet3d_forward)
        pruner = Pruner(find_prunable_layers(fresh))
        pruner.prepare(fresh)
        # 70% on average, per-layer sparsities drawn from the seed (some layers near 95%: killed channels happen)
        rng = np.random.default_rng(seed)
        pruner.set_sparsities({lay.name: float(rng.uniform(0.45, 0.95)) for lay in pruner.layers})
        state = copy.deepcopy(fresh.state_dict())
        for lam in lambdas:
            fresh.load_state_dict(state)
            values = _finetune(fresh, pruner, taps, stats, lam, batch)
            assert all(np.isfinite(values)), (seed, lam, values)
            worst[(seed, lam)] = max(values) / lam
    tensors = sum(len(v) for v in stats.values())
    assert max(worst.values()) < BOUND_PER_TENSOR * tensors, worst


@pytest.mark.slow
@pytest.mark.parametrize('weights', ['random', 'trained'])
@pytest.mark.parametrize('name', sorted(MODELS))
def test_lsi_loss_bounded_through_sgd_at_the_largest_lambda(name, weights):
    """Every seed at lambda = 10, where the regulariser dominates the step."""
    _check(name, weights, (10.0,))


@pytest.mark.slow
@pytest.mark.parametrize('weights', ['random', 'trained'])
@pytest.mark.parametrize('name', sorted(MODELS))
def test_lsi_loss_bounded_through_sgd_every_lambda(name, weights):
    """The whole matrix: lambda in {0.1, 1, 10} (``make test-all``)."""
    _check(name, weights, LAMBDAS)
