"""MMPrune4UHook + LogSobolevLoss on shrunk mmdet3d zoo models, trained a few iterations on the real samples."""
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from zoo import REPO, SHARED_DATA, require_sample

pytest.importorskip('mmdet3d')

pytestmark = pytest.mark.heavy(seconds=300)  # the file's time on 2 cores: scheduled first (conftest)
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmprune4u_plugin  # noqa: E402,F401
from mmprune4u_plugin.core.layers import get_weight  # noqa: E402
from mmprune4u_plugin.hooks import MMPrune4UHook  # noqa: E402

SGD = dict(type='OptimWrapper', clip_grad=None,
           optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=1e-2))
CASES = {
    'mvxnet': ('kitti-sample', 'mvxnet/mvxnet_tiny_8xb1-short_kitti-sample.py', dict(
        estimator='exact', grid=[0.0, 0.5, 0.8, 0.95],
        modalities=dict(camera=['img_'], fusion=['fusion_layer'], lidar=['pts_']),
        taps=dict(camera='img_neck', lidar='pts_middle_encoder'), lsi_reference='teacher')),  # default: dense_stats
    'bevfusion_lite': ('nuscenes-v1.0-mini-sample', 'bevfusion_lite/bevfusion-lite_tiny_lidar-cam_1xb1-short_nus-sample.py',
                       dict(estimator='fisher', num_probes=2, grid=[0.0, 0.5, 0.8, 0.95],
                            modalities=dict(camera=['img_', 'view_transform'], lidar=['pts_middle_encoder'],
                                            fusion=['fusion_layer', 'pts_backbone', 'pts_neck', 'bbox_head']),
                            taps=dict(camera='view_transform', lidar='pts_middle_encoder'),
                            lsi_loss=dict(type='LogSobolevLoss', loss_weight=1.0))),
    'centerpoint': ('nuscenes-v1.0-mini-sample', 'centerpoint/centerpoint_tiny_8xb1-short_nus-sample.py', dict(
        estimator='fisher', num_probes=2, grid=[0.0, 0.5, 0.8, 0.95], modalities=dict(lidar=['pts_']), taps=dict(lidar='pts_neck'))),
    'cylinder3d': ('semantickitti-sample', 'semantickitti/cylinder3d_tiny_8xb1-short_semantickitti-sample.py', dict(
        estimator='fisher', num_probes=2, grid=[0.0, 0.5, 0.8, 0.95],
        modalities=dict(lidar=['voxel_encoder', 'backbone', 'decode_head']), taps=dict(lidar='backbone'))),
    'minkunet': ('semantickitti-sample', 'semantickitti/minkunet_tiny_spconv_8xb1-short_semantickitti-sample.py', dict(
        estimator='exact', grid=[0.0, 0.5, 0.8, 0.95], modalities=dict(lidar=['backbone', 'decode_head']),
        taps=dict(lidar='backbone'))),
}


def _global_sparsity(model, layers):
    zeros = sum(int((get_weight(model, lay) == 0).sum()) for lay in layers)
    return zeros / sum(lay.numel for lay in layers)


@pytest.mark.parametrize('case', sorted(CASES))
def test_prune_and_finetune_with_lsi_loss(case, tmp_path):
    sample, config, hook_kw = CASES[case]
    require_sample(sample)
    cfg = Config.fromfile(str(REPO / 'configs' / config))
    cfg.work_dir = str(tmp_path)
    cfg.optim_wrapper = SGD
    hook_kw = dict(dict(lsi_loss=dict(type='LogSobolevLoss', loss_weight=0.1)), **hook_kw)
    cfg.custom_hooks = [dict(type='MMPrune4UHook', sparsity=0.7, calib_batches=1, **hook_kw)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
    assert abs(_global_sparsity(runner.model, hook.pruner.layers) - 0.7) <= 1e-4
    values, counts = runner.message_hub.get_scalar('train/loss_lsi').data
    # logged as its own loss term at every iteration; finite, and positive once the pruned features move
    assert len(values) == 4 and all(np.isfinite(v) and v >= 0 for v in values) and max(values) > 0
    by_mod = json.loads((tmp_path / 'mmprune4u' / 'round_1' / 'allocation.json').read_text())['modalities']
    assert set(by_mod) == set(hook_kw['modalities'])


def test_lsi_loss_is_zero_when_not_pruned():
    require_sample('kitti-sample')
    from mmengine.dataset import pseudo_collate

    from zoo import build_from_config
    from mmprune4u_plugin.core.taps import Tap
    from mmprune4u_plugin.hooks.lsi_finetune import LSIFinetuner
    from mmprune4u_plugin.losses import LogSobolevLoss
    torch.manual_seed(0)
    _, model, dataset = build_from_config('mvxnet/mvxnet_tiny_8xb1-short_kitti-sample.py')
    model.train()
    taps = dict(camera=Tap('img_neck'), lidar=Tap('pts_middle_encoder'))
    finetuner = LSIFinetuner(model, taps, LogSobolevLoss(loss_weight=1.0), reference='teacher',
                             teacher=LSIFinetuner.make_teacher(model))
    data = model.data_preprocessor(pseudo_collate([dataset[0]]), True)
    model.eval()  # the teacher is a reference, taken in eval mode: an unpruned student in eval mode matches it
    losses = model(**data, mode='loss')
    assert losses['loss_lsi'].item() == 0.0
    model.train()
    with torch.no_grad():  # a perturbed student gives a positive, differentiable term
        model.img_neck.lateral_convs[0].conv.weight.mul_(0.5)
    losses = model(**data, mode='loss')
    assert losses['loss_lsi'].item() > 0 and losses['loss_lsi'].requires_grad
    finetuner.remove()
    assert 'loss' not in model.__dict__


def test_pruned_checkpoint_with_plain_config_in_tools_test(tmp_path):
    """tools/train.py prunes; tools/test.py evaluates the checkpoint with the plain config; zeros survive."""
    require_sample('kitti-sample')
    info = pickle.loads((SHARED_DATA / 'kitti-sample' / '000008.pkl').read_bytes())
    # KittiMetric needs what the sample pkl (mmdet3d's demo data) lacks: categories and sample_idx
    info['metainfo']['categories'] = {'Pedestrian': 0, 'Cyclist': 1, 'Car': 2, 'DontCare': -1}
    info['data_list'][0]['sample_idx'] = info['data_list'][0]['sample_id']
    ann = tmp_path / 'kitti_infos_with_categories.pkl'
    ann.write_bytes(pickle.dumps(info))
    plain = 'configs/pointpillars/pointpillars_tiny_8xb1-short_kitti-sample.py'
    prune_cfg = tmp_path / 'prune.py'
    prune_cfg.write_text(f"_base_ = ['{REPO / plain}']\n"
                         "custom_hooks = [dict(type='MMPrune4UHook', sparsity=0.6, allocator='lamp')]\n")
    run = dict(cwd=REPO, capture_output=True, text=True, timeout=600)
    train = subprocess.run([sys.executable, 'tools/train.py', str(prune_cfg), '--work-dir', str(tmp_path / 'w')],
                           **run)
    assert train.returncode == 0, train.stderr[-3000:]
    test = subprocess.run([sys.executable, 'tools/test.py', plain, str(tmp_path / 'w' / 'iter_4.pth'),
                           '--work-dir', str(tmp_path / 't'), '--cfg-options', f'test_evaluator.ann_file={ann}'],
                          **run)
    assert test.returncode == 0, test.stderr[-3000:]
    assert 'prunable-weight sparsity of the tested model: 0.6000' in test.stdout + test.stderr
    assert 'Car 3D AP' in test.stdout + test.stderr or 'Kitti metric' in test.stdout + test.stderr
    state = torch.load(tmp_path / 'w' / 'iter_4.pth', map_location='cpu', weights_only=False)['state_dict']
    assert not any(k.startswith(('module.', 'detector.')) for k in state)


def test_pruned_segmentor_in_tools_test(tmp_path):
    """MinkUNet (SemanticKITTI): the pruning config through tools/train.py, then SegMetric via tools/test.py."""
    require_sample('semantickitti-sample')
    run = dict(cwd=REPO, capture_output=True, text=True, timeout=600)
    configs = REPO / 'configs' / 'semantickitti'
    train = subprocess.run([sys.executable, 'tools/train.py',
                            str(configs / 'mmprune4u-70_minkunet_tiny_spconv_8xb1-short_semantickitti-sample.py'),
                            '--work-dir', str(tmp_path / 'w')], **run)
    assert train.returncode == 0, train.stderr[-3000:]
    allocation = json.loads((tmp_path / 'w' / 'mmprune4u' / 'round_1' / 'allocation.json').read_text())
    assert set(allocation['modalities']) == {'lidar'}
    metrics = tmp_path / 'm.json'
    test = subprocess.run([sys.executable, 'tools/test.py',  # the pruning config: its modality groups are used
                           str(configs / 'mmprune4u-70_minkunet_tiny_spconv_8xb1-short_semantickitti-sample.py'),
                           str(tmp_path / 'w' / 'iter_4.pth'), '--work-dir', str(tmp_path / 't'),
                           '--metrics-json', str(metrics)], **run)
    assert test.returncode == 0, test.stderr[-3000:]
    result = json.loads(metrics.read_text())
    assert abs(result['sparsity'] - 0.7) <= 1e-4
    assert list(result['by_modality']) == ['lidar'] and result['by_modality']['lidar'] == result['sparsity']
    assert 0.0 <= result['metrics']['miou'] <= 1.0 and 0.0 <= result['metrics']['acc'] <= 1.0


def test_segmentor_task_taps_are_the_classifier():
    """mmdet3d segmentors call ``decode_head.forward`` directly, so the taps sit on ``decode_head.conv_seg``."""
    require_sample('semantickitti-sample')
    from zoo import build_from_config
    from mmprune4u_plugin.core.taps import Tap
    from mmprune4u_plugin.hooks.calibration import default_task_taps
    _, model, _ = build_from_config('semantickitti/minkunet_tiny_spconv_8xb1-short_semantickitti-sample.py')
    assert default_task_taps(model) == [Tap('decode_head.conv_seg', 'input'), Tap('decode_head.conv_seg', 'output')]


@pytest.mark.parametrize('estimator', ['exact', 'fisher'])
def test_zoo_frozen_stages_and_norm_eval(estimator, tmp_path):
    """MVX-Net's own frozen image stem / first stage (frozen_stages=1) and a norm_eval ResNet are pruned, measured
    (fisher turns their gradients on only while measuring) and stay frozen, with their BNs in eval mode."""
    require_sample('kitti-sample')
    cfg = Config.fromfile(str(REPO / 'configs' / 'mvxnet' / 'mvxnet_tiny_8xb1-short_kitti-sample.py'))
    cfg.model.img_backbone.update(frozen_stages=1, norm_eval=True)
    cfg.work_dir = str(tmp_path)
    cfg.optim_wrapper = SGD
    cfg.train_cfg.max_iters = 2
    cfg.custom_hooks = [dict(type='MMPrune4UHook', sparsity=0.7, calib_batches=1, estimator=estimator, num_probes=2,
                             grid=[0.0, 0.5, 0.8, 0.95],
                             layer_bounds={r'img_backbone\.(conv1|layer1)\.': (0.5, 0.95)})]  # must prune them
    runner = Runner.from_cfg(cfg)
    frozen = {n for n, p in runner.model.named_parameters() if not p.requires_grad}
    assert 'img_backbone.conv1.weight' in frozen and 'img_backbone.layer1.0.conv1.weight' in frozen
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
    names = {lay.name for lay in hook.pruner.layers}
    assert {'img_backbone.conv1.weight', 'img_backbone.layer1.0.conv1.weight'} <= names
    params = dict(runner.model.named_parameters())
    assert {n for n, p in params.items() if not p.requires_grad} == frozen  # still frozen after measuring
    assert all(params[n].grad is None for n in frozen)
    assert all(not m.training for m in runner.model.img_backbone.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))  # norm_eval kept
    assert abs(_global_sparsity(runner.model, hook.pruner.layers) - 0.7) <= 1e-4
    assert sum(int((params[n] == 0).sum()) for n in frozen if n in names) > 0  # frozen weights were pruned
