"""End to end through the core on real mmdet3d zoo models (shrunk), on the real KITTI frame."""
import numpy as np
import pytest
import torch

from zoo import build_from_config, require_sample
from mmprune4u_plugin.core.allocation.base import problem_from_layers
from mmprune4u_plugin.core.allocation.dp import allocate
from mmprune4u_plugin.core.curves import measure_curves
from mmprune4u_plugin.core.layers import find_prunable_layers
from mmprune4u_plugin.core.pruner import Pruner
from mmprune4u_plugin.core.taps import Tap

pytestmark = pytest.mark.heavy(seconds=120)  # the file's time on 2 cores: scheduled first (conftest)
from mmprune4u_plugin.hooks.calibration import collect_batches, default_task_taps, mmdet3d_forward

CASES = {
    'pointpillars': ('pointpillars/pointpillars_tiny_8xb1-short_kitti-sample.py', dict(lidar=['']),
                     dict(lidar=Tap('neck')), (0.0, 0.5, 0.7, 0.9)),
    'mvxnet': ('mvxnet/mvxnet_tiny_8xb1-short_kitti-sample.py',
               dict(camera=['img_'], fusion=['fusion_layer'], lidar=['pts_']),
               dict(camera=Tap('img_neck'), lidar=Tap('pts_middle_encoder')), (0.0, 0.6, 0.9)),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_core_prunes_zoo_model_at_70_percent(case):
    require_sample('kitti-sample')
    config, modalities, mod_taps, grid = CASES[case]
    torch.manual_seed(0)
    cfg, model, dataset = build_from_config(config)
    from mmengine.dataset import pseudo_collate
    model.eval()
    batches = collect_batches(model, [pseudo_collate([dataset[0]])], 1)
    layers = find_prunable_layers(model, modalities=modalities)
    assert len(layers) >= 10
    curves = measure_curves(model, layers, batches, mmdet3d_forward, task_taps=default_task_taps(model),
                            modality_taps=mod_taps, grid=grid)
    assert np.all(np.isfinite(curves.task)) and np.all(curves.task[:, 0] == 0)
    assert curves.task[:, -1].max() > 0
    assert curves.stats['leaf_forwards'] < curves.stats['plain_leaf_forwards']
    problem = problem_from_layers([lay.name for lay in layers], [lay.numel for lay in layers], 0.7)
    sparsities = allocate(problem, curves.cost(beta=0.1, target=0.7), curves.grid)
    pruner = Pruner(layers)
    pruner.prepare(model)
    pruner.set_sparsities(sparsities)
    report = pruner.report()
    assert report.zeros == round(0.7 * report.total)
    assert len({round(s, 3) for s in sparsities.values()}) > 1  # layer-adaptive, not uniform
    with torch.no_grad():
        out = mmdet3d_forward(model, batches[0])
    assert torch.isfinite(out[0].pred_instances_3d.bboxes_3d.tensor).all()
