import numpy as np
import pytest
import torch

from helpers import TwoBranchNet, forward_two_branch, two_branch_batches
from mmprune4u_plugin.core.curves import DistortionCurves, measure_curves
from mmprune4u_plugin.core.estimate_exact import exact_curves
from mmprune4u_plugin.core.layers import find_prunable_layers, get_weight, weights_fingerprint
from mmprune4u_plugin.core.lsi import feature_lsi
from mmprune4u_plugin.core.taps import Tap

GRID = (0.0, 0.3, 0.6, 0.9)
TASK = (Tap('bbox_head', 'input'), Tap('bbox_head', 'output'))
MODS = dict(camera=Tap('img_backbone'), lidar=Tap('pts_backbone', channel_dim=-1))


def _setup(seed=0):
    torch.manual_seed(seed)
    model = TwoBranchNet()
    layers = find_prunable_layers(model, modalities=dict(camera=['img_'], lidar=['pts_'], fusion=['fusion', 'bbox']))
    return model, layers, two_branch_batches(2)


def _measure(model, layers, batches, **kw):
    kw.setdefault('grid', GRID)
    return measure_curves(model, layers, batches, forward_two_branch, task_taps=TASK, modality_taps=MODS, **kw)


def test_exact_by_hand_for_one_layer():
    model, layers, batches = _setup()
    curves = _measure(model, layers, batches)
    # prune the last head conv to 0.6 by hand; only the output tap changes; D = mean over the two task taps
    w = model.bbox_head[2].weight
    saved = w.detach().clone()
    with torch.no_grad():
        model.eval()
        dense_out = [model(**b) for b in batches]
        order = torch.sort(saved.abs().flatten(), stable=True).indices
        w.view(-1)[order[:round(0.6 * w.numel())]] = 0
        pruned_out = [model(**b) for b in batches]
        w.copy_(saved)
    num = sum(float((p - d).double().pow(2).sum()) for p, d in zip(pruned_out, dense_out))
    den = sum(float(d.double().pow(2).sum()) for d in dense_out)
    li = [lay.name for lay in layers].index('bbox_head.2.weight')
    assert curves.task[li, 2] == pytest.approx(0.5 * num / den, rel=1e-9)
    assert np.all(curves.task[:, 0] == 0) and np.all(curves.local[:, 0] == 0)
    # the layer-local regulariser equals the LSI bound between the layer's own outputs
    with torch.no_grad():
        x = [torch.relu(model.bbox_head[0](model.norm(model.fusion_layer(torch.cat(
            [model.img_backbone(b['img']), model.pts_backbone(b['pts']).mean(1)[:, :, None, None].expand(
                -1, -1, 6, 6)], 1))))) for b in batches]
        dense = torch.cat([model.bbox_head[2](xi) for xi in x])
        pw = saved.clone()
        pw.view(-1)[order[:round(0.6 * w.numel())]] = 0
        pruned = torch.cat([torch.nn.functional.conv2d(xi, pw, model.bbox_head[2].bias) for xi in x])
    ref = feature_lsi(pruned.double(), dense.double(), fisher=False).item()
    assert curves.local[li, 2] == pytest.approx(ref, rel=1e-6)
    # weights are left unchanged
    assert torch.equal(w, saved)


def test_memoised_equals_plain_and_saves_forwards():
    model, layers, batches = _setup()
    memo = _measure(model, layers, batches)
    plain = _measure(model, layers, batches, memoise=False)
    np.testing.assert_allclose(memo.task, plain.task, rtol=1e-9, atol=1e-12)
    for m in MODS:
        np.testing.assert_allclose(memo.downstream[m], plain.downstream[m], rtol=1e-9, atol=1e-12)
    # a camera layer never changes the LiDAR tap, a LiDAR layer never the camera tap
    names = [lay.name for lay in layers]
    assert np.all(memo.downstream['lidar'][names.index('img_backbone.0.weight')] == 0)
    assert np.all(memo.downstream['camera'][names.index('pts_backbone.2.weight')] == 0)
    assert memo.stats['leaf_forwards'] < 0.75 * memo.stats['plain_leaf_forwards']
    assert memo.stats['memo_calls_served'] > 0
    assert plain.stats['leaf_forwards'] == plain.stats['plain_leaf_forwards']


def test_both_exact_estimators_stop_at_the_last_tap():
    """The plain estimator is the memo's baseline: like the memo, it pays for the network up to the last tap only
    (a detector's post-processing, NMS, feeds no tap). A dense pass here runs 7 leaves: the image branch's conv, ReLU,
    conv, the LiDAR branch's linear, ReLU, linear, and the fusion conv that holds the tap; the head and norm never."""
    model, layers, batches = _setup()
    after_tap = []
    for module in (model.norm, model.bbox_head):
        module.register_forward_pre_hook(lambda m, a: after_tap.append(m))
    upstream = [lay for lay in layers if not lay.name.startswith('bbox_head')]
    grid = np.array(GRID)
    for memoise in (True, False):
        with torch.no_grad():
            _, _, stats = exact_curves(model.eval(), upstream, grid, batches, forward_two_branch,
                                       task_taps=[Tap('fusion_layer')], modality_taps=MODS, memoise=memoise)
        assert after_tap == []
        assert stats['plain_leaf_forwards'] == 7 * len(batches) * len(upstream) * 3
        if not memoise:
            assert stats['leaf_forwards'] == stats['plain_leaf_forwards']


def test_fisher_ranks_like_exact():
    model, layers, batches = _setup()
    exact = _measure(model, layers, batches, grid=(0.0, 0.05, 0.1, 0.2))
    fisher = _measure(model, layers, batches, grid=(0.0, 0.05, 0.1, 0.2), estimator='fisher', num_probes=64)
    assert fisher.stats['backward_passes'] == 2 * 2 * 64
    a, b = exact.task[:, -1], fisher.task[:, -1]
    rank_a, rank_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    rho = 1 - 6 * np.sum((rank_a - rank_b) ** 2) / (len(a) * (len(a) ** 2 - 1))
    assert rho > 0.8
    # Gauss-Newton is the second-order term of the exact distortion: same size at small sparsity
    ratio = fisher.task[:, 1].sum() / exact.task[:, 1].sum()
    assert 0.5 < ratio < 2.0


def test_save_load_roundtrip_and_cost(tmp_path):
    model, layers, batches = _setup()
    curves = _measure(model, layers, batches)
    curves.source = weights_fingerprint(model, layers)
    curves.save(tmp_path / 'c.npz')
    back = DistortionCurves.load(tmp_path / 'c.npz')
    assert back.names == curves.names and back.matches(layers, GRID) and back.source == curves.source
    assert back.matches(layers, GRID, weights_fingerprint(model, layers))
    assert not back.matches(layers, GRID[:-1]) and not back.matches(layers[:-1], GRID)
    with torch.no_grad():  # one weight changed: the cache is for other weights
        get_weight(model, layers[0]).view(-1)[0] += 1.0
    assert not back.matches(layers, GRID, weights_fingerprint(model, layers))
    np.testing.assert_array_equal(back.task, curves.task)
    np.testing.assert_array_equal(back.downstream['camera'], curves.downstream['camera'])
    reg = curves.regulariser(target=0.5)
    k = int(np.argmin(np.abs(curves.grid - 0.5)))  # on D's scale at the target: equal medians there
    assert np.median(reg[:, k][reg[:, k] > 0]) == pytest.approx(np.median(curves.task[:, k][curves.task[:, k] > 0]))
    np.testing.assert_allclose(reg / reg.max(), curves.local / curves.local.max())  # one factor for all modalities
    np.testing.assert_allclose(curves.cost(beta=0.5, target=0.5), curves.task + 0.5 * reg)
    with pytest.raises(ValueError, match='`target`'):
        curves.cost(beta=0.5)
    assert curves.cost(beta=0.0) is curves.task
    with pytest.raises(FileNotFoundError, match='does not exist'):
        DistortionCurves.load(tmp_path / 'missing.npz')


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(batches=[]), ValueError, 'calibration data is empty'),
    (dict(grid=(0.1, 0.5)), ValueError, '`grid` must be increasing'),
    (dict(grid=(0.0, 0.5, 1.0)), ValueError, '`grid` must be increasing'),
    (dict(task_taps=(Tap('no_such_module'),)), ValueError, "no module named 'no_such_module'"),
    (dict(estimator='magic'), ValueError, "'magic' is not a valid Estimator"),
])
def test_bad_inputs(kwargs, error, message):
    model, layers, batches = _setup()
    args = dict(batches=batches, grid=GRID, task_taps=TASK)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        measure_curves(model, layers, args.pop('batches'), forward_two_branch, **args)


def test_nan_curve_rejected():
    with pytest.raises(ValueError, match="task curve of layer 'a' is not finite at sparsity 0.5"):
        DistortionCurves(['a'], ['other'], [4], [0.0, 0.5], np.array([[0.0, np.nan]]), np.zeros((1, 2)))
