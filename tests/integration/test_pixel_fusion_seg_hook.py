"""MMPrune4UHook on the LiDAR-camera segmentor: MMPrune4U allocation from exact curves with both modalities' taps
(the FPN's two outputs, the backbone's voxel features), then finetuning with LogSobolevLoss, on a tiny generated
synthetic SemanticKITTI set."""
import json

import numpy as np
import pytest

from zoo import REPO

pytest.importorskip('mmdet3d')
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmprune4u_plugin  # noqa: E402,F401
from mmprune4u_plugin.core.layers import get_weight  # noqa: E402
from mmprune4u_plugin.datasets.synthetic_semantickitti import (SyntheticSemanticKittiConfig,  # noqa: E402
                                                               generate_synthetic_semantickitti, hdl64e)
from mmprune4u_plugin.hooks import MMPrune4UHook  # noqa: E402

CONFIG = REPO / 'configs/semantickitti/mmprune4u-70_minkunet-pixelfusion_small_1xb2-2k_synthetic-semantickitti.py'


def test_mmprune4u_on_the_fusion_segmentor_reaches_its_target_per_modality_and_finetunes(tmp_path):
    root = tmp_path / 'data'
    generate_synthetic_semantickitti(root, {'train': (0,), 'val': (8,), 'test': (11,)},
                                     SyntheticSemanticKittiConfig(seed=0, frames=2, image_scale=0.25,
                                                                  lidar=hdl64e(256)))
    cfg = Config.fromfile(str(CONFIG))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(root)
        cfg[loader].num_workers, cfg[loader].persistent_workers = 0, False
    cfg.work_dir = str(tmp_path / 'w')
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 3, 3
    cfg.param_scheduler = []
    hook_cfg = cfg.default_hooks.mmprune4u
    hook_cfg.grid = [0.0, 0.5, 0.8, 0.95]
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
    layers = hook.pruner.layers
    zeros = sum(int((get_weight(runner.model, lay) == 0).sum()) for lay in layers)
    assert abs(zeros / sum(lay.numel for lay in layers) - 0.7) <= 1e-4
    allocation = json.loads((tmp_path / 'w' / 'mmprune4u' / 'round_1' / 'allocation.json').read_text())
    assert set(allocation['modalities']) == {'camera', 'lidar', 'fusion'}
    sparsities = {lay.name: float((get_weight(runner.model, lay) == 0).float().mean()) for lay in layers}
    assert max(sparsities.values()) - min(sparsities.values()) > 0.2  # layer-adaptive, which uniform is not
    values, _ = runner.message_hub.get_scalar('train/loss_lsi').data
    assert len(values) == 3 and all(np.isfinite(v) and v >= 0 for v in values) and max(values) > 0
    metrics = runner.val()  # the pruned model through SegMetric
    assert 0 <= metrics['miou'] <= 1 and metrics['mmprune4u/sparsity'] == pytest.approx(0.7, abs=1e-4)
