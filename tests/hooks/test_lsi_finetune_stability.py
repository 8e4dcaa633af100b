"""LogSobolevLoss through the LSI finetuner stays finite and bounded under SGD, on a small multimodal model.

The default-run counterpart of tests/integration/test_lsi_stability.py (the same matrix on BEVFusion-Lite and MVX-Net
is marked slow: 3-5 s per SGD step on CPU). Random and trained weights, lambda in {0.1, 1, 10}, five seeds swept (not
picked), 30 SGD steps, pruning with per-layer sparsities up to 95% so that channels die, both references.
"""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip('mmdet3d')
from mmprune4u_plugin.core.layers import find_prunable_layers  # noqa: E402
from mmprune4u_plugin.core.pruner import Pruner  # noqa: E402
from mmprune4u_plugin.core.taps import Tap  # noqa: E402
from mmprune4u_plugin.hooks.lsi_finetune import LSIFinetuner, dense_statistics  # noqa: E402
from mmprune4u_plugin.losses import LogSobolevLoss  # noqa: E402

TAPS = dict(camera=Tap('img_backbone'), lidar=Tap('pts_backbone', channel_dim=-1))
# per tapped tensor, channel mean of log(1 + B): B = 1e4 (a channel 100x the killed-channel cost) gives 9.2; a diverging
# run (the raw bound went 16 -> 4e3 -> NaN here at lambda = 10) does not stay below it
BOUND = len(TAPS) * math.log1p(1e4)


class ToyFusion(nn.Module):
    """Camera conv branch and LiDAR point branch with BatchNorm, fused into a head; mmdet3d-style ``loss``."""

    def __init__(self) -> None:
        super().__init__()
        self.img_backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                          nn.Conv2d(8, 8, 3, padding=1))
        self.pts_backbone = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8))
        self.bbox_head = nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU(), nn.Conv2d(16, 2, 1))

    def _head(self, inputs):
        cam = self.img_backbone(inputs['img'])
        pts = self.pts_backbone(inputs['pts'].reshape(-1, 4)).reshape(*inputs['pts'].shape[:2], 8).amax(1)
        return self.bbox_head(torch.cat([cam, pts[:, :, None, None].expand_as(cam)], 1))

    def loss(self, inputs, data_samples):
        return dict(loss_task=(self._head(inputs) - data_samples).pow(2).mean())

    def forward(self, inputs, data_samples=None, mode='predict'):
        return self.loss(inputs, data_samples) if mode == 'loss' else self._head(inputs)


def _batch(gen):
    inputs = dict(img=torch.randn(4, 3, 8, 8, generator=gen), pts=torch.randn(4, 32, 4, generator=gen))
    return inputs, torch.randn(4, 2, 8, 8, generator=gen)


def _forward(model, batch):
    return model(batch[0], batch[1], mode='predict')


@pytest.mark.parametrize('reference', ['dense_stats', 'teacher'])
@pytest.mark.parametrize('weights', ['random', 'trained'])
def test_lsi_loss_finite_and_bounded_through_sgd(weights, reference):
    worst = {}
    for seed in range(5):
        torch.manual_seed(seed)  # swept, not picked: every seed must pass
        gen = torch.Generator().manual_seed(100 + seed)
        model = ToyFusion()
        batches = [_batch(gen) for _ in range(4)]
        if weights == 'trained':
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            for step in range(60):
                inputs, target = batches[step % 4]
                opt.zero_grad()
                model.loss(inputs, target)['loss_task'].backward()
                opt.step()
        stats = dense_statistics(model, TAPS, batches, _forward)
        teacher = LSIFinetuner.make_teacher(model) if reference == 'teacher' else None
        pruner = Pruner(find_prunable_layers(model))
        pruner.prepare(model)
        rng = np.random.default_rng(seed)
        pruner.set_sparsities({lay.name: float(rng.uniform(0.45, 0.95)) for lay in pruner.layers})
        state = copy.deepcopy(model.state_dict())
        for lam in (0.1, 1.0, 10.0):
            model.load_state_dict(state)
            model.train()
            finetuner = LSIFinetuner(model, TAPS, LogSobolevLoss(loss_weight=lam), reference=reference,
                                     teacher=teacher, dense_stats=stats)
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            values = []
            for step in range(30):
                inputs, target = batches[step % 4]
                losses = model.loss(inputs, target)
                values.append(losses['loss_lsi'].item())
                opt.zero_grad()
                (losses['loss_task'] + losses['loss_lsi']).backward()
                opt.step()
                pruner.apply()
            finetuner.remove()
            assert all(np.isfinite(values)), (seed, lam, values)
            worst[(seed, lam)] = max(values) / lam
    assert max(worst.values()) < BOUND, worst
