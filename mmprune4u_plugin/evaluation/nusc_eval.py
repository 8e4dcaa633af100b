"""nuScenes detection evaluation without the nuScenes database.

The devkit's ``DetectionEval`` needs a ``NuScenes`` object only to load the ground truth, the ego poses (for the
box-to-ego distance) and the bicycle racks. Here the ground truth comes from mmdet3d 1.x info dicts and the poses from
their ``lidar2ego`` / ``ego2global``, and the devkit's own pieces do the rest: ``DetectionBox`` / ``EvalBoxes``,
``accumulate``, ``calc_ap``, ``calc_tp`` and ``DetectionMetrics`` under a ``DetectionConfig`` (default
``detection_cvpr_2019``). The class-range filter of the devkit's ``filter_eval_boxes`` is reimplemented (xy distance
to the ego < ``class_range``; ground truth with no LiDAR point dropped); the bicycle-rack filter has nothing to act
on and is left out.

Box conventions: mmdet3d 1.x LiDAR boxes are ``[x, y, z, l, w, h, yaw]`` (bottom centre in
``LiDARInstance3DBoxes``, gravity centre in the info pkls) with yaw counter-clockwise from the LiDAR x axis; a
devkit box has a global gravity centre, ``size = (w, l, h)`` and a rotation quaternion whose yaw is the angle of the
box's length axis.
"""
from __future__ import annotations

import numpy as np
from nuscenes.eval.common.data_classes import EvalBoxes
from nuscenes.eval.detection.algo import accumulate, calc_ap, calc_tp
from nuscenes.eval.detection.constants import DETECTION_NAMES, TP_METRICS
from nuscenes.eval.detection.data_classes import (DetectionBox, DetectionConfig, DetectionMetricDataList,
                                                  DetectionMetrics)
from pyquaternion import Quaternion

# The attribute mmdet3d's NuScenesMetric writes for a box of each class, and its rule for moving boxes (speed
# above 0.2 m/s). Applied to predictions and ground truth alike.
DEFAULT_ATTRIBUTE = {'car': 'vehicle.parked', 'pedestrian': 'pedestrian.moving', 'trailer': 'vehicle.parked',
                     'truck': 'vehicle.parked', 'bus': 'vehicle.moving', 'motorcycle': 'cycle.without_rider',
                     'construction_vehicle': 'vehicle.parked', 'bicycle': 'cycle.without_rider', 'barrier': '',
                     'traffic_cone': ''}
ERR_NAMES = {'trans_err': 'mATE', 'scale_err': 'mASE', 'orient_err': 'mAOE', 'vel_err': 'mAVE', 'attr_err': 'mAAE'}


def attribute_name(name: str, speed: float) -> str:
    """The nuScenes attribute of a box of class ``name`` moving at ``speed`` m/s (mmdet3d's rule)."""
    if speed > 0.2:
        if name in ('car', 'construction_vehicle', 'bus', 'truck', 'trailer'):
            return 'vehicle.moving'
        if name in ('bicycle', 'motorcycle'):
            return 'cycle.with_rider'
        return DEFAULT_ATTRIBUTE[name]
    if name == 'pedestrian':
        return 'pedestrian.standing'
    if name == 'bus':
        return 'vehicle.stopped'
    return DEFAULT_ATTRIBUTE[name]


def lidar_boxes_to_global(boxes: np.ndarray, velocities: np.ndarray, lidar2ego, ego2global) -> dict:
    """Move LiDAR-frame boxes to the global frame.

    Args:
        boxes (np.ndarray): (N, 7) ``[x, y, z, l, w, h, yaw]`` with (x, y, z) the gravity centre.
        velocities (np.ndarray): (N, 2) LiDAR-frame ``[vx, vy]``.
        lidar2ego, ego2global: 4x4 transforms.

    Returns:
        dict: ``translation`` (N, 3), ``size`` (N, 3) as (w, l, h), ``yaw`` (N,), ``velocity`` (N, 2) and
        ``ego_translation`` (N, 3) (box centre minus ego position, global axes, as the devkit computes it).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    lidar2global = np.asarray(ego2global, dtype=np.float64) @ np.asarray(lidar2ego, dtype=np.float64)
    rot = lidar2global[:3, :3]
    translation = boxes[:, :3] @ rot.T + lidar2global[:3, 3]
    heading = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6]), np.zeros(len(boxes))], 1) @ rot.T
    vel = np.concatenate([np.asarray(velocities, dtype=np.float64).reshape(-1, 2), np.zeros((len(boxes), 1))], 1)
    return dict(translation=translation, size=boxes[:, [4, 3, 5]], yaw=np.arctan2(heading[:, 1], heading[:, 0]),
                velocity=(vel @ rot.T)[:, :2], ego_translation=translation - np.asarray(ego2global)[:3, 3])


def detection_boxes(sample_token: str, names, glob: dict, *, scores=None, num_pts=None) -> list[DetectionBox]:
    """DetectionBoxes from :func:`lidar_boxes_to_global` output; ``scores`` for predictions, ``num_pts`` for GT."""
    out = []
    for i, name in enumerate(names):
        vel = glob['velocity'][i]
        out.append(DetectionBox(
            sample_token=sample_token, translation=tuple(map(float, glob['translation'][i])),
            size=tuple(float(max(s, 1e-3)) for s in glob['size'][i]),
            rotation=tuple(map(float, Quaternion(axis=[0.0, 0.0, 1.0], radians=float(glob['yaw'][i])).elements)),
            velocity=(float(vel[0]), float(vel[1])), ego_translation=tuple(map(float, glob['ego_translation'][i])),
            num_pts=-1 if num_pts is None else int(num_pts[i]), detection_name=name,
            detection_score=-1.0 if scores is None else float(scores[i]),
            attribute_name=attribute_name(name, float(np.hypot(*vel)))))
    return out


def filter_eval_boxes(boxes: EvalBoxes, class_range: dict) -> EvalBoxes:
    """The devkit's distance and point filters, in place: keep ``ego_dist < class_range`` and ``num_pts != 0``."""
    for token in boxes.sample_tokens:
        boxes.boxes[token] = [b for b in boxes[token]
                              if b.ego_dist < class_range[b.detection_name] and b.num_pts != 0]
    return boxes


def evaluate_detection(gt: EvalBoxes, pred: EvalBoxes,
                       cfg: DetectionConfig) -> tuple[DetectionMetrics, DetectionMetricDataList]:
    """The devkit's ``DetectionEval.evaluate`` on already filtered boxes (same sample tokens in both)."""
    if set(gt.sample_tokens) != set(pred.sample_tokens):
        raise ValueError('`gt` and `pred` must cover the same samples, but got '
                         f'{len(gt.sample_tokens)} and {len(pred.sample_tokens)} sample tokens')
    md_list = DetectionMetricDataList()
    for name in cfg.class_names:
        for dist_th in cfg.dist_ths:
            md_list.set(name, dist_th, accumulate(gt, pred, name, cfg.dist_fcn_callable, dist_th))
    metrics = DetectionMetrics(cfg)
    for name in cfg.class_names:
        for dist_th in cfg.dist_ths:
            metrics.add_label_ap(name, dist_th, calc_ap(md_list[(name, dist_th)], cfg.min_recall, cfg.min_precision))
        for metric_name in TP_METRICS:
            if (name == 'traffic_cone' and metric_name in ('attr_err', 'vel_err', 'orient_err')) or (
                    name == 'barrier' and metric_name in ('attr_err', 'vel_err')):
                tp = np.nan
            else:
                tp = calc_tp(md_list[(name, cfg.dist_th_tp)], cfg.min_recall, metric_name)
            metrics.add_label_tp(name, metric_name, tp)
    return metrics, md_list


def summarize(metrics: DetectionMetrics) -> dict:
    """Flat dict: NDS, mAP, the five mean TP errors, and per class its AP (mean and per distance) and TP errors."""
    out = dict(NDS=float(metrics.nd_score), mAP=float(metrics.mean_ap))
    out.update({ERR_NAMES[k]: float(v) for k, v in metrics.tp_errors.items()})
    for name, ap in metrics.mean_dist_aps.items():
        out[f'{name}_AP'] = float(ap)
        for dist_th in metrics.cfg.dist_ths:
            out[f'{name}_AP_dist_{dist_th}'] = float(metrics.get_label_ap(name, dist_th))
        for metric_name in TP_METRICS:
            err = metrics.get_label_tp(name, metric_name)
            if np.isfinite(err):
                out[f'{name}_{metric_name}'] = float(err)
    return out


__all__ = ['DETECTION_NAMES', 'attribute_name', 'lidar_boxes_to_global', 'detection_boxes', 'filter_eval_boxes',
           'evaluate_detection', 'summarize']
