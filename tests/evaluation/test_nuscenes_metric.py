"""SyntheticNuScenesMetric / nusc_eval on hand-made cases whose result is known, and against mmdet3d's formatting."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet3d')
from mmdet3d.structures import LiDARInstance3DBoxes  # noqa: E402

from mmprune4u_plugin.datasets.nuscenes_calib import BUILTIN_RIG, DEFAULT_SAMPLE_PKL  # noqa: E402
from mmprune4u_plugin.datasets.scene_sampler import CLASSES, SIZE  # noqa: E402
from mmprune4u_plugin.evaluation import SyntheticNuScenesMetric  # noqa: E402
from mmprune4u_plugin.evaluation.nusc_eval import lidar_boxes_to_global  # noqa: E402

TP_ERRS = ('mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE')


def _pose(yaw, x, y):
    out = np.eye(4)
    out[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    out[:2, 3] = x, y
    return out


def _instances(rng, n_per_class=2):
    out = []
    for k, name in enumerate(CLASSES):
        for j in range(n_per_class):
            ang = rng.uniform(-np.pi, np.pi)
            r = rng.uniform(8.0, 25.0)
            l, w, h = SIZE[name]
            moving = j == 0 and name not in ('barrier', 'traffic_cone')
            out.append(dict(bbox_label=k, bbox_3d=[r * np.cos(ang), r * np.sin(ang), -1.84 + h / 2, l, w, h,
                                                   rng.uniform(-np.pi, np.pi)],
                            bbox_3d_isvalid=True, bbox_label_3d=k, num_lidar_pts=int(rng.integers(1, 50)),
                            num_radar_pts=0, velocity=[3.0, -1.0] if moving else [0.0, 0.0]))
    return out


@pytest.fixture
def ann_file(tmp_path):
    rng = np.random.default_rng(0)
    data_list = []
    for idx in range(2):
        inst = _instances(rng)
        # ignored by the evaluation: beyond the pedestrian range (40 m), and a box without LiDAR points
        inst.append(dict(bbox_label=7, bbox_3d=[45.0, 0.0, -1.0, 0.7, 0.7, 1.7, 0.0], bbox_3d_isvalid=True,
                         bbox_label_3d=7, num_lidar_pts=3, num_radar_pts=0, velocity=[0.0, 0.0]))
        inst.append(dict(bbox_label=0, bbox_3d=[0.0, 15.0, -1.0, 4.6, 1.9, 1.7, 0.0], bbox_3d_isvalid=False,
                         bbox_label_3d=0, num_lidar_pts=0, num_radar_pts=0, velocity=[0.0, 0.0]))
        data_list.append(dict(sample_idx=idx, token=f'tok{idx}', timestamp=0.0,
                              ego2global=_pose(0.7 + idx, 300.0, 1200.0).tolist(),
                              lidar_points=dict(num_pts_feats=5, lidar_path='x.bin',
                                                lidar2ego=BUILTIN_RIG.lidar2ego.tolist()),
                              images={}, lidar_sweeps=[], instances=inst))
    path = tmp_path / 'infos.pkl'
    meta = dict(categories={c: i for i, c in enumerate(CLASSES)}, dataset='nuscenes', version='v1.0-synthetic')
    with open(path, 'wb') as f:
        pickle.dump(dict(metainfo=meta, data_list=data_list), f)
    return path, data_list


def _predictions(info, *, shift=(0.0, 0.0), dyaw=0.0, extra=()):
    inst = info['instances'][:-2] + [info['instances'][k] for k in extra]
    boxes = np.array([i['bbox_3d'] for i in inst])
    boxes[:, :2] += shift
    boxes[:, 6] += dyaw
    vel = np.array([i['velocity'] for i in inst])
    tensor = torch.tensor(np.concatenate([boxes, vel], 1), dtype=torch.float32)
    n = len(inst)
    return dict(sample_idx=info['sample_idx'], pred_instances_3d=dict(
        bboxes_3d=LiDARInstance3DBoxes(tensor, box_dim=9, origin=(0.5, 0.5, 0.5)),
        scores_3d=torch.linspace(0.9, 0.5, n), labels_3d=torch.tensor([i['bbox_label_3d'] for i in inst])))


def _evaluate(ann, preds):
    path, _ = ann
    metric = SyntheticNuScenesMetric(ann_file=str(path))
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, preds)
    return metric.evaluate(len(preds))


def _get(res, key):
    return res[f'NuScenes metric/{key}']


def test_perfect_predictions(ann_file):
    res = _evaluate(ann_file, [_predictions(info) for info in ann_file[1]])
    assert _get(res, 'mAP') == pytest.approx(1.0)
    assert _get(res, 'NDS') == pytest.approx(1.0, abs=1e-5)
    for err in TP_ERRS:
        assert _get(res, err) == pytest.approx(0.0, abs=1e-5)
    for name in CLASSES:
        assert _get(res, f'{name}_AP') == pytest.approx(1.0)


def test_empty_predictions(ann_file):
    preds = []
    for info in ann_file[1]:
        p = _predictions(info)
        keep = torch.zeros(len(p['pred_instances_3d']['scores_3d']), dtype=torch.bool)
        p['pred_instances_3d'] = {k: v[keep] for k, v in p['pred_instances_3d'].items()}
        preds.append(p)
    res = _evaluate(ann_file, preds)
    assert _get(res, 'mAP') == 0.0
    assert _get(res, 'NDS') == 0.0
    for err in TP_ERRS:
        assert _get(res, err) == pytest.approx(1.0)


@pytest.mark.parametrize('shift, expect_map', [(0.3, 1.0), (0.7, 0.75)])
def test_shifted_predictions_give_that_translation_error(ann_file, shift, expect_map):
    d = shift / np.sqrt(2)
    res = _evaluate(ann_file, [_predictions(info, shift=(d, d)) for info in ann_file[1]])
    # the real lidar2ego tilts ~1.4 deg, so a LiDAR-xy shift is a slightly shorter global-xy one
    assert _get(res, 'mATE') == pytest.approx(shift, abs=1e-3)
    assert _get(res, 'mAP') == pytest.approx(expect_map)  # 0.7 m misses only the 0.5 m threshold
    assert _get(res, 'car_AP_dist_0.5') == pytest.approx(expect_map * 4 - 3)
    assert _get(res, 'NDS') == pytest.approx((5 * expect_map + (1 - shift) + 4) / 10, abs=1e-3)


def test_rotated_predictions_give_that_orientation_error(ann_file):
    res = _evaluate(ann_file, [_predictions(info, dyaw=0.2) for info in ann_file[1]])
    assert _get(res, 'mAOE') == pytest.approx(0.2, abs=1e-4)
    assert _get(res, 'mATE') == pytest.approx(0.0, abs=1e-4)


def test_out_of_range_boxes_are_ignored_and_pointless_ground_truth_is_not_a_target(ann_file):
    far_pedestrian, pointless_car = -2, -1
    res = _evaluate(ann_file, [_predictions(info, extra=[far_pedestrian]) for info in ann_file[1]])
    assert _get(res, 'mAP') == pytest.approx(1.0)  # neither the unmatched GT at 45 m nor its prediction counts
    res = _evaluate(ann_file, [_predictions(info, extra=[pointless_car]) for info in ann_file[1]])
    assert _get(res, 'pedestrian_AP') == pytest.approx(1.0)
    assert _get(res, 'car_AP') < 1.0  # as in the devkit, a GT box with no LiDAR point is dropped: a false positive


def test_wrong_class_is_a_miss(ann_file):
    preds = [_predictions(info) for info in ann_file[1]]
    for p in preds:  # call every truck a construction vehicle and vice versa
        lab = p['pred_instances_3d']['labels_3d']
        t, c = CLASSES.index('truck'), CLASSES.index('construction_vehicle')
        p['pred_instances_3d']['labels_3d'] = torch.where(lab == t, c, torch.where(lab == c, t, lab))
    res = _evaluate(ann_file, preds)
    assert _get(res, 'truck_AP') == 0.0 and _get(res, 'construction_vehicle_AP') == 0.0
    assert _get(res, 'mAP') == pytest.approx(0.8)


@pytest.mark.skipif(not DEFAULT_SAMPLE_PKL.is_file(), reason='real nuScenes sample not present')
def test_global_boxes_match_mmdet3d_nuscenes_metric_formatting():
    """Our LiDAR -> global conversion equals mmdet3d's output_to_nusc_box + lidar_nusc_box_to_global."""
    from mmdet3d.evaluation.metrics.nuscenes_metric import lidar_nusc_box_to_global, output_to_nusc_box
    from nuscenes.eval.common.config import config_factory
    from pyquaternion import Quaternion

    with open(DEFAULT_SAMPLE_PKL, 'rb') as f:
        info = pickle.load(f)['data_list'][0]
    boxes = np.array([i['bbox_3d'] for i in info['instances']])
    vel = np.array([i['velocity'] for i in info['instances']])
    det = dict(bboxes_3d=LiDARInstance3DBoxes(torch.tensor(np.c_[boxes, vel]), box_dim=9, origin=(0.5, 0.5, 0.5)),
               scores_3d=torch.ones(len(boxes)), labels_3d=torch.zeros(len(boxes), dtype=torch.long))
    cfg = config_factory('detection_cvpr_2019')
    cfg.class_range = {k: 1e9 for k in cfg.class_range}  # keep all
    ref = lidar_nusc_box_to_global(info, output_to_nusc_box(det)[0], ['car'], cfg)
    ours = lidar_boxes_to_global(boxes, vel, info['lidar_points']['lidar2ego'], info['ego2global'])
    np.testing.assert_allclose(ours['translation'], [b.center for b in ref], atol=1e-4)
    np.testing.assert_allclose(ours['size'], [b.wlh for b in ref], atol=1e-5)
    np.testing.assert_allclose(ours['velocity'], [b.velocity[:2] for b in ref], atol=1e-4)
    # yaw as the devkit reads it (quaternion_yaw projects the rotated x axis)
    ref_yaw = [np.arctan2(*(Quaternion(b.orientation).rotation_matrix @ [1, 0, 0])[[1, 0]]) for b in ref]
    np.testing.assert_allclose(np.cos(ours['yaw'] - ref_yaw), 1.0, atol=1e-6)
