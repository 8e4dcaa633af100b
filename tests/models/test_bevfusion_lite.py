"""BEVFusionLite on the real nuScenes keyframe through NuScenesDataset and the tiny configs: loss + backward, predict,
tensor mode, the LiDAR-only and camera-only variants, a short Runner schedule, and the paper-size config."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmdet3d')
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import mmprune4u_plugin  # noqa: E402,F401  (registers the models and the transform, applies the CPU shims)
from mmdet3d.registry import DATASETS, MODELS  # noqa: E402
from mmdet3d.structures import LiDARInstance3DBoxes  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLE = Path(os.environ.get('MMPRUNE4U_SHARED_DATA', REPO.parent / 'shared' / 'data')) / 'nuscenes-v1.0-mini-sample'
CONFIGS = REPO / 'configs' / 'bevfusion_lite'
TINY = 'bevfusion-lite_tiny_{}_1xb1-short_nus-sample.py'


@pytest.fixture(autouse=True, scope='module')
def setup():
    init_default_scope('mmdet3d')
    patch = pytest.MonkeyPatch()
    patch.setenv('MMPRUNE4U_SHARED_DATA', str(SAMPLE.parent))  # the configs' data_root, whatever the cwd
    # One thread: on a 2-core machine shared with other jobs, two OpenMP threads run these passes 5-10x slower
    # (barrier waits); the results do not depend on it (the spconv scatter shim is exact with any thread count).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    patch.undo()


def require_sample() -> None:
    if not SAMPLE.is_dir():
        pytest.skip(f'real nuScenes sample {SAMPLE} is absent (it lives in ../shared/data beside the repo)')


def load(variant: str, split: str = 'train'):
    require_sample()
    cfg = Config.fromfile(str(CONFIGS / TINY.format(variant)))
    loader = cfg.train_dataloader if split == 'train' else cfg.test_dataloader
    dataset = DATASETS.build(loader.dataset)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model, pseudo_collate([dataset[0]])


def count_head_calls(model) -> list:
    calls = []
    model.bbox_head.register_forward_hook(lambda module, args, out: calls.append(1))
    return calls


def loss_and_backward(model, batch) -> dict:
    model.train()
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    return losses


def grad_norm(module) -> float:
    return sum(p.grad.norm().item() for p in module.parameters() if p.grad is not None)


def test_fused_model_trains_predicts_and_exposes_raw_outputs_on_the_real_sample():
    _, model, batch = load('lidar-cam')
    inputs = batch['inputs']
    assert inputs['img'][0].shape == (6, 3, 128, 352) and inputs['points'][0].shape[1] == 5
    assert len(batch['data_samples'][0].gt_instances_3d) > 30
    calls = count_head_calls(model)
    heatmap_biases = [head.heatmap[-1].bias for head in model.bbox_head.task_heads]
    assert all(torch.allclose(b, torch.full_like(b, -2.19)) for b in heatmap_biases)  # init_weights sets the prior

    losses = loss_and_backward(model, batch)
    assert {f'task{t}.loss_heatmap' for t in range(6)} <= set(losses) and len(calls) == 1
    for name in ('img_backbone', 'img_neck', 'view_transform', 'pts_middle_encoder', 'fusion_layer',
                 'pts_backbone', 'pts_neck', 'bbox_head'):
        norm = grad_norm(getattr(model, name))
        assert 0 < norm < float('inf'), name

    model.eval()
    with torch.no_grad():
        model.bbox_head.test_cfg['score_threshold'] = 0.0  # untrained scores sit near the 0.1 prior
        data = model.data_preprocessor(batch, False)
        pred = model(**data, mode='predict')[0].pred_instances_3d
        raw = model(**data, mode='tensor')
    assert isinstance(pred.bboxes_3d, LiDARInstance3DBoxes) and pred.bboxes_3d.tensor.shape[1] == 9
    assert len(pred.bboxes_3d) > 0 and len(pred.scores_3d) == len(pred.labels_3d) == len(pred.bboxes_3d)
    assert 0 <= pred.labels_3d.min() and pred.labels_3d.max() < 10
    assert len(raw) == 6 and raw[0][0]['heatmap'].shape == (1, 1, 128, 128)
    assert len(calls) == 3  # the head ran through __call__ in loss, predict and tensor mode


@pytest.mark.parametrize('variant, absent, present', [
    ('lidar', ('img_backbone', 'img_neck', 'view_transform'), 'pts_middle_encoder'),
    ('cam', ('pts_voxel_encoder', 'pts_middle_encoder'), 'view_transform'),
])
def test_single_modality_variant_trains(variant, absent, present):
    _, model, batch = load(variant)
    assert all(getattr(model, name) is None for name in absent)
    assert ('img' in batch['inputs']) == (variant == 'cam') and ('points' in batch['inputs']) == (variant == 'lidar')
    loss_and_backward(model, batch)
    assert 0 < grad_norm(getattr(model, present)) < float('inf')
    assert 0 < grad_norm(model.bbox_head) < float('inf')


def test_test_pipeline_predicts():
    _, model, batch = load('lidar-cam', split='test')
    model.eval()
    with torch.no_grad():
        results = model.test_step(batch)
    assert results[0].pred_instances_3d.bboxes_3d.tensor.shape[1] == 9


def test_short_schedule_runs_in_the_runner(tmp_path):
    from mmengine.runner import Runner
    require_sample()
    cfg = Config.fromfile(str(CONFIGS / TINY.format('lidar-cam')))
    cfg.work_dir = str(tmp_path)
    cfg.train_cfg.max_iters = 2
    cfg.default_hooks.checkpoint.interval = 2
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert (tmp_path / 'iter_2.pth').is_file()


def test_invalid_branches_fail_with_a_clear_message():
    cfg = Config.fromfile(str(CONFIGS / '_base_' / 'bevfusion-lite_model-tiny.py'))
    with pytest.raises(ValueError, match='no modality'):
        MODELS.build(dict(cfg.model, img_backbone=None, view_transform=None, img_neck=None, pts_voxel_encoder=None,
                          pts_middle_encoder=None))
    with pytest.raises(ValueError, match='`img_backbone` and `view_transform`'):
        MODELS.build(dict(cfg.model, view_transform=None))
    with pytest.raises(ValueError, match='`fusion_layer` is None'):
        MODELS.build(dict(cfg.model, fusion_layer=None))


def test_paper_size_model_config_builds():
    cfg = Config.fromfile(str(CONFIGS / '_base_' / 'bevfusion-lite_model-paper.py'))
    model = MODELS.build(cfg.model)
    assert model.view_transform.frustum.shape == (118, 32, 88, 3)
    assert model.pts_middle_encoder.sparse_shape == [41, 1440, 1440]
    assert 30e6 < sum(p.numel() for p in model.parameters()) < 60e6


def test_fused_model_initialised_from_single_sensor_checkpoints_starts_as_the_lidar_model():
    """BEVFusion's two-stage recipe: the fused model from a LiDAR-only (+ camera-only) checkpoint computes exactly
    the LiDAR-only model's outputs, and the camera slice of the fuser kernel is zero but trainable."""
    from mmprune4u_plugin.models.fusion_init import fused_state_dict
    _, lidar, _ = load('lidar')
    _, camera, _ = load('cam')
    _, fused, batch = load('lidar-cam', split='test')
    torch.manual_seed(1)
    for module in (lidar, camera):  # weights unlike the fused model's own init
        for p in module.parameters():
            p.data.normal_(0, 0.05)
    key = 'fusion_layer.conv.conv.weight'
    state, origin = fused_state_dict(fused.state_dict(), lidar.state_dict(), camera.state_dict(), key, 32)
    assert fused.load_state_dict(state, strict=True)
    assert origin['assembled'] == [key] and origin['initial'] == []
    assert {k.split('.')[0] for k in origin['camera']} == {'img_backbone', 'img_neck', 'view_transform'}
    assert {k.split('.')[0] for k in origin['lidar']} >= {'pts_middle_encoder', 'pts_backbone', 'bbox_head'}
    kernel = fused.fusion_layer.conv.conv.weight
    assert torch.all(kernel[:, :32] == 0) and torch.equal(kernel[:, 32:], lidar.fusion_layer.conv.conv.weight)
    assert torch.equal(fused.img_backbone.conv1.weight, camera.img_backbone.conv1.weight)
    for model in (lidar, fused):
        model.eval()
    with torch.no_grad():
        data = fused.data_preprocessor(batch, False)
        out_fused, out_lidar = fused(**data, mode='tensor'), lidar(**data, mode='tensor')
    for task_fused, task_lidar in zip(out_fused, out_lidar):
        for name, value in task_lidar[0].items():
            torch.testing.assert_close(task_fused[0][name], value, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='fuser kernel shapes do not fit'):
        fused_state_dict(fused.state_dict(), lidar.state_dict(), None, key, 16)
    with pytest.raises(ValueError, match='no key of the camera checkpoint'):
        fused_state_dict(fused.state_dict(), lidar.state_dict(), {'x': torch.zeros(1)}, key, 32)


def test_lidar_depth_supervision_of_the_camera_branch_on_the_real_sample():
    cfg, _, batch = load('lidar-cam')
    torch.manual_seed(0)
    model = MODELS.build(dict(cfg.model, view_transform=dict(cfg.model.view_transform, depth_loss_weight=1.0)))
    model.init_weights()
    losses = loss_and_backward(model, batch)
    # near-uniform depth logits at init: cross-entropy close to ln(59 bins) = 4.08
    assert 3.0 < losses['loss_depth'].item() < 6.0
    assert 0 < grad_norm(model.view_transform.depthnet) < float('inf')
    data = model.data_preprocessor(batch, True)
    model(**data, mode='tensor')  # a training-mode pass with grad outside loss keeps no graph on the module
    assert model.view_transform._depth_logits is None
    copy.deepcopy(model)  # e.g. the LSI teacher: fails if a non-leaf tensor hangs on a module
    cfg, _, batch = load('cam')  # the camera-only pipeline packs no points
    model = MODELS.build(dict(cfg.model, view_transform=dict(cfg.model.view_transform, depth_loss_weight=1.0)))
    with pytest.raises(KeyError, match='needs the LiDAR points'):
        loss_and_backward(model, batch)


def test_lidar_absent_gives_the_empty_scene_map_and_the_camera_still_predicts():
    """No points (mmprune4u's LidarAbsent): the LiDAR BEV map is zeros of the shape a real scan gives, finding
    that shape moves no BN statistic, and the fused model predicts from the camera alone."""
    from mmprune4u_plugin.datasets.corruptions import LidarAbsent
    _, model, batch = load('lidar-cam', split='test')
    model.train()  # the dummy pass that finds the shape must not update the running statistics
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        real = model.extract_pts_bev(data['inputs']['voxels'], 1)
    buffers = {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}
    empty = copy.deepcopy(batch)
    empty['inputs']['points'] = [LidarAbsent()(dict(points=p))['points'].tensor for p in _packed_points(batch)]
    data = model.data_preprocessor(empty, False)
    assert data['inputs']['voxels']['coors'].shape[0] == 0
    with torch.no_grad():
        bev = model.extract_pts_bev(data['inputs']['voxels'], 1)
    assert bev.shape == real.shape and not bev.any()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())
    model.eval()
    with torch.no_grad():
        pred = model.test_step(empty)[0].pred_instances_3d
    assert pred.bboxes_3d.tensor.shape[1] == 9


def _packed_points(batch):
    from mmdet3d.structures import LiDARPoints
    return [LiDARPoints(p, points_dim=p.shape[1]) for p in batch['inputs']['points']]
