"""``SyntheticNuScenesMetric``: nuScenes detection metrics (mAP, NDS, TP errors) from info pkls, no database.

Usable from a config like mmdet3d's ``NuScenesMetric``::

    val_evaluator = dict(type='SyntheticNuScenesMetric', data_root=data_root,
                         ann_file='nuscenes_infos_val.pkl')

Works for any mmdet3d 1.x nuScenes-format info pkl (the synthetic set, or real infos); the metrics are the devkit's
(see :mod:`.nusc_eval`). Evaluated samples are those that reached ``process`` (normally the whole val split).
"""
from __future__ import annotations

import os.path as osp
from typing import Optional, Sequence

import mmengine
import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.common.data_classes import EvalBoxes

from mmdet3d.registry import METRICS
from .nusc_eval import DETECTION_NAMES, detection_boxes, evaluate_detection, filter_eval_boxes, \
    lidar_boxes_to_global, summarize


@METRICS.register_module()
class SyntheticNuScenesMetric(BaseMetric):
    """nuScenes detection evaluation of LiDAR-frame predictions against the instances of an info pkl.

    Args:
        ann_file (str): info pkl with the ground truth (joined to ``data_root`` when relative).
        data_root (str): dataset root. Defaults to ''.
        eval_version (str): devkit detection config. Defaults to 'detection_cvpr_2019'.
        collect_device (str): 'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): metric name prefix. Defaults to 'NuScenes metric'.
        backend_args (dict, optional): file backend for the pkl. Defaults to None.

    Note:
        - Predictions are ``pred_instances_3d`` with ``bboxes_3d`` (``LiDARInstance3DBoxes``, 7 or 9 dims),
          ``scores_3d`` and ``labels_3d`` indexing ``dataset_meta['classes']``; classes outside nuScenes' ten
          are ignored.
        - Attributes come from speed with mmdet3d's rule, for predictions and ground truth alike, so mAAE scores
          the moving/static state.
        - At most ``max_boxes_per_sample`` (500) predictions per sample are kept, the highest scoring.
    """

    default_prefix: Optional[str] = 'NuScenes metric'

    def __init__(self, ann_file: str, data_root: str = '', eval_version: str = 'detection_cvpr_2019',
                 collect_device: str = 'cpu', prefix: Optional[str] = None,
                 backend_args: Optional[dict] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file = ann_file if osp.isabs(ann_file) or not data_root else osp.join(data_root, ann_file)
        self.eval_version = eval_version
        self.eval_cfg = config_factory(eval_version)
        self.backend_args = backend_args

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample['pred_instances_3d']
            boxes = pred['bboxes_3d']
            tensor = boxes.tensor.detach().cpu().double()
            vel = tensor[:, 7:9].numpy() if tensor.shape[1] >= 9 else np.zeros((len(tensor), 2))
            gravity = np.concatenate([boxes.gravity_center.detach().cpu().double().numpy(),
                                      tensor[:, 3:7].numpy()], 1)
            self.results.append(dict(sample_idx=int(sample['sample_idx']), boxes=gravity, velocity=vel,
                                     scores=pred['scores_3d'].detach().cpu().numpy().astype(np.float64),
                                     labels=pred['labels_3d'].detach().cpu().numpy().astype(np.int64)))

    def compute_metrics(self, results: list) -> dict:
        classes = self.dataset_meta['classes']
        data = mmengine.load(self.ann_file, backend_args=self.backend_args)
        infos = {int(info['sample_idx']): info for info in data['data_list']}
        categories = data.get('metainfo', {}).get('categories')  # the ids of bbox_label_3d in the pkl
        gt_names = {v: k for k, v in categories.items()} if categories else dict(enumerate(classes))
        gt, pred = self.build_eval_boxes(results, infos, classes, gt_names)
        metrics, _ = evaluate_detection(filter_eval_boxes(gt, self.eval_cfg.class_range),
                                        filter_eval_boxes(pred, self.eval_cfg.class_range), self.eval_cfg)
        out = summarize(metrics)
        lines = [f'{name:>22s}  AP {out[f"{name}_AP"]:.4f}' for name in self.eval_cfg.class_names]
        print_log(f'nuScenes detection ({len(results)} samples): NDS {out["NDS"]:.4f} mAP {out["mAP"]:.4f} '
                  + ' '.join(f'{k} {out[k]:.4f}' for k in ('mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE')) + '\n'
                  + '\n'.join(lines), logger='current')
        return out

    def build_eval_boxes(self, results: list, infos: dict, classes: Sequence[str],
                         gt_names: dict) -> tuple[EvalBoxes, EvalBoxes]:
        """Ground-truth and predicted ``EvalBoxes`` (global frame) of the samples in ``results``.

        ``classes`` names the predicted labels, ``gt_names`` the info pkl's ``bbox_label_3d`` ids.
        """
        gt, pred = EvalBoxes(), EvalBoxes()
        for res in results:
            if res['sample_idx'] not in infos:
                raise KeyError(f'sample_idx {res["sample_idx"]} is not in ann_file {self.ann_file}')
            info = infos[res['sample_idx']]
            lidar2ego, ego2global = info['lidar_points']['lidar2ego'], info['ego2global']
            token = info['token']
            inst = [i for i in info['instances'] if gt_names.get(i['bbox_label_3d'], '') in DETECTION_NAMES]
            g = lidar_boxes_to_global(np.array([i['bbox_3d'] for i in inst]).reshape(-1, 7),
                                      np.nan_to_num(np.array([i['velocity'] for i in inst]).reshape(-1, 2)),
                                      lidar2ego, ego2global)
            gt.add_boxes(token, detection_boxes(token, [gt_names[i['bbox_label_3d']] for i in inst], g,
                                                num_pts=[i['num_lidar_pts'] for i in inst]))
            names = np.array([classes[k] if 0 <= k < len(classes) else '' for k in res['labels']], dtype=object)
            keep = np.array([n in DETECTION_NAMES for n in names], dtype=bool)
            order = np.argsort(-res['scores'][keep], kind='stable')[:self.eval_cfg.max_boxes_per_sample]
            p = lidar_boxes_to_global(res['boxes'][keep][order], res['velocity'][keep][order], lidar2ego,
                                      ego2global)
            pred.add_boxes(token, detection_boxes(token, list(names[keep][order]), p,
                                                  scores=res['scores'][keep][order]))
        return gt, pred
