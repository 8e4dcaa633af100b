import numpy as np
import pytest

from helpers import TwoBranchNet, arange_
from mmprune4u_plugin.core.allocation.base import InfeasibleAllocationError
from mmprune4u_plugin.core.curves import DistortionCurves
from mmprune4u_plugin.core.layers import find_prunable_layers
from mmprune4u_plugin.core.plan import AllocationSpec, allocate_layers
from mmprune4u_plugin.core.schedule import round_targets


def test_round_targets_by_hand():
    assert round_targets(0.7, rounds=1) == [0.7]
    it = round_targets(0.75, rounds=2, schedule='iterative')  # a = 0.5: 0.5, then 0.75
    assert it == pytest.approx([0.5, 0.75]) and it[-1] == 0.75
    assert round_targets(0.8, rounds=2, schedule='cubic') == pytest.approx([0.8 * (1 - 0.125), 0.8])
    for kind in ('iterative', 'cubic'):
        seq = round_targets(0.9, rounds=5, schedule=kind)
        assert all(b > a for a, b in zip(seq, seq[1:])) and seq[-1] == 0.9


@pytest.mark.parametrize('kwargs, message', [
    (dict(target=1.0, rounds=1), '`target` must be in'), (dict(target=0.5, rounds=0), '`rounds` must be >= 1'),
    (dict(target=0.5, rounds=2), 'exactly 1 round'), (dict(target=0.5, rounds=1, schedule='x'), 'not a valid')])
def test_round_targets_bad(kwargs, message):
    with pytest.raises(ValueError, match=message):
        round_targets(kwargs.pop('target'), **kwargs)


def _layers():
    model = arange_(TwoBranchNet())
    layers = find_prunable_layers(model, modalities=dict(camera=['img_'], lidar=['pts_']))
    weights = {n: p.detach() for n, p in model.named_parameters()}
    return layers, weights



@pytest.mark.parametrize('allocator', ['uniform', 'uniform_plus', 'global', 'lamp', 'erk'])
def test_modality_budget_and_global_target_exact(allocator):
    layers, weights = _layers()
    out = allocate_layers(layers, AllocationSpec(0.5, allocator, modality_budgets={'camera': 0.3}), weights=weights)
    zeros = {lay.name: round(out[lay.name] * lay.numel) for lay in layers}
    cam = [lay for lay in layers if lay.modality == 'camera']
    assert sum(zeros[lay.name] for lay in cam) == round(0.3 * sum(lay.numel for lay in cam))
    assert sum(zeros.values()) == round(0.5 * sum(lay.numel for lay in layers))


def test_bounds_keep_dense_and_floor():
    layers, weights = _layers()
    spec = AllocationSpec(0.5, 'uniform', layer_bounds={r'^bbox_head\.0': (0.6, 0.7)}, keep_dense=['fusion'])
    out = allocate_layers(layers, spec, weights=weights)
    assert out['fusion_layer.weight'] == 0 and 0.6 <= out['bbox_head.0.weight'] <= 0.7
    floor = {lay.name: 0.4 for lay in layers if lay.name != 'fusion_layer.weight'}
    out2 = allocate_layers(layers, AllocationSpec(0.6, 'uniform', keep_dense=['fusion']), weights=weights,
                           floor=floor)
    assert all(out2[n] >= 0.4 for n in floor)
    with pytest.raises(InfeasibleAllocationError, match='already at sparsity'):
        allocate_layers(layers, AllocationSpec(0.6, 'uniform', keep_dense=['fusion']), weights=weights,
                        floor={'fusion_layer.weight': 0.2})


def test_mmprune4u_vs_rd_use_regulariser():
    layers, _ = _layers()
    L, grid = len(layers), np.array([0.0, 0.5, 0.9])
    task = np.tile([0.0, 0.1, 0.5], (L, 1))
    task[0] = [0.0, 0.01, 0.05]  # by task distortion alone the first camera layer is the cheapest to prune
    local = np.zeros((L, 3))
    local[0] = [0.0, 5.0, 10.0]  # the first camera layer is very sensitive under the regulariser
    local[1] = [0.0, 0.1, 0.2]
    curves = DistortionCurves([lay.name for lay in layers], [lay.modality for lay in layers],
                              [lay.numel for lay in layers], grid, task, local)
    rd = allocate_layers(layers, AllocationSpec(0.5, 'rd'), curves=curves)
    ours = allocate_layers(layers, AllocationSpec(0.5, 'mmprune4u', beta=1.0), curves=curves)
    assert rd[layers[0].name] > 0.85 and ours[layers[0].name] < rd[layers[0].name]
    with pytest.raises(ValueError, match='needs distortion curves'):
        allocate_layers(layers, AllocationSpec(0.5, 'rd'))
    with pytest.raises(ValueError, match='match no prunable layer'):
        allocate_layers(layers, AllocationSpec(0.5, 'rd', keep_dense=['radar']), curves=curves)
    with pytest.raises(ValueError, match='modalities without layers'):
        allocate_layers(layers, AllocationSpec(0.5, 'rd', modality_budgets={'radar': 0.1}), curves=curves)
