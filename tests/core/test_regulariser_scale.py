"""The regulariser's scale: beta = 1 weighs R like D at the target, and beta moves the allocation when it must."""
import numpy as np
import pytest
import torch
from torch import nn

from mmprune4u_plugin.core.curves import DistortionCurves, measure_curves
from mmprune4u_plugin.core.layers import find_prunable_layers
from mmprune4u_plugin.core.plan import AllocationSpec, allocate_layers
from mmprune4u_plugin.core.taps import Tap


def test_scale_by_hand():
    grid = [0.0, 0.5, 0.9]
    task = np.array([[0, 1.0, 4.0], [0, 3.0, 9.0], [0, 5.0, 20.0]])
    local = np.array([[0, 10.0, 50.0], [0, 20.0, 60.0], [0, 30.0, 70.0]])
    curves = DistortionCurves(['a', 'b', 'c'], ['camera', 'lidar', 'lidar'], [4, 4, 4], grid, task, local)
    # at s* = 0.5: median D = 3, median R = 20 -> c = 0.15; at s* = 0.9: 9 / 60
    assert curves.regulariser_scale(0.5) == pytest.approx(0.15)
    assert curves.regulariser_scale(0.8) == pytest.approx(9 / 60)
    np.testing.assert_allclose(curves.regulariser(target=0.5), local * 0.15)
    # modality weights act before the common scale: camera x2 -> R_a = 20, 40, 100; median at 0.5 = 20 still
    np.testing.assert_allclose(curves.regulariser(modality_weights=dict(camera=2.0), target=0.5)[0],
                               [0, 20 * 0.15, 100 * 0.15])
    with pytest.raises(ValueError, match='`target` must be in'):
        curves.regulariser_scale(1.0)
    zero = DistortionCurves(['a'], ['x'], [4], grid, task[:1], np.zeros((1, 3)))
    with pytest.raises(ValueError, match='regulariser is zero for every layer'):
        zero.cost(1.0, target=0.5)


class LoudQuiet(nn.Module):
    """Two identical layers on the same input; the quiet one reaches the task features scaled by 1e-3.

    Its task distortion is 1e-6 of the loud one's, while its own output distribution is distorted exactly as much
    (same weights, same input: identical R curves). RD (beta = 0) must strip the quiet layer first; with R on, the
    quiet layer's cheap task distortion no longer makes it free, and as beta grows the two identical R curves pull
    the allocation toward the balanced split.
    """

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.loud = nn.Linear(16, 16)
        self.quiet = nn.Linear(16, 16)
        with torch.no_grad():
            self.loud.weight.copy_(torch.randn(16, 16, generator=gen))
            self.loud.bias.zero_()
            self.quiet.load_state_dict(self.loud.state_dict())
        self.head = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.loud(x) + 1e-3 * self.quiet(x))


def test_beta_moves_the_allocation_on_a_model_built_for_it():
    model = LoudQuiet()
    layers = find_prunable_layers(model)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(256, 16, generator=gen)]
    grid = tuple(round(0.05 * i, 2) for i in range(20))
    curves = measure_curves(model, layers, batches, lambda m, b: m(b), task_taps=[Tap('head', 'input')], grid=grid)
    np.testing.assert_allclose(curves.local[0], curves.local[1])  # identical R by construction
    quiet = [lay.name for lay in layers].index('quiet.weight')

    def alloc(beta):
        out = allocate_layers(layers, AllocationSpec(0.5, 'mmprune4u', beta=beta), curves=curves)
        assert sum(out[lay.name] * lay.numel for lay in layers) == pytest.approx(0.5 * 512)
        return out[layers[quiet].name]

    s0, s1, s100 = alloc(0.0), alloc(1.0), alloc(100.0)
    _check_beta_effect_tool(curves, layers, {0.0: s0, 1.0: s1})
    assert s0 >= 0.9  # RD: the quiet layer is (almost) free to prune
    assert s1 < s0 - 0.05  # beta = 1 is on D's scale: it must move the allocation
    assert abs(s100 - 0.5) <= 0.1  # R dominates: identical curves, balanced split


def _check_beta_effect_tool(curves, layers, quiet_sparsity: dict) -> None:
    """tools/beta_effect.py (the report of issue 8 item 3) counts the changed layers and the modality sparsities."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools'))
    from beta_effect import beta_effect
    curves.modalities = ['loud', 'quiet'] if layers[0].name == 'loud.weight' else ['quiet', 'loud']
    rows = {r['beta']: r for r in beta_effect(curves, [0.5], [0.0, 1.0])}
    assert rows[0.0]['changed'] == 0 and rows[1.0]['changed'] == 2  # both layers move (the total is fixed)
    for beta, s_quiet in quiet_sparsity.items():
        assert rows[beta]['modalities']['quiet'] == pytest.approx(s_quiet)
        assert rows[beta]['modalities']['loud'] == pytest.approx(1.0 - s_quiet)  # equal sizes, 50% overall
