"""Which label a 3D detector gives the look-alike classes: a confusion table of its test-split predictions.

    python tools/lookalike_confusion.py CONFIG CHECKPOINT [--radius 2] [--max-range 50] [--out FILE.json]
    python tools/lookalike_confusion.py CONFIG --predictions DUMP.pkl   # a DumpResults pickle: no inference

The synthetic nuScenes-format data gives three pairs of classes the same sizes and LiDAR reflectivity (truck /
construction_vehicle, bus / trailer, motorcycle / bicycle, :mod:`mmprune4u_plugin.datasets.scene_sampler`): only the
cameras tell them apart. Per-class AP cannot say whether a fused model used that: CenterHead's NMS is class-agnostic
within a task, so a model that cannot tell a pair apart labels all of it as one class and the other's AP drops to
~0, which looks like a detection failure. This tool matches every ground-truth object of ``--pairs`` (within
``--max-range`` m of the LiDAR) to the highest-scoring prediction whose BEV centre is within ``--radius`` m, and counts
that prediction's label: the object's own class, its partner, another class, or none (missed).

The model runs with mmengine's Runner on the config's ``test_dataloader`` (its metric too, and mmengine's
``DumpResults`` beside it); ground truth comes from the test dataset's ``get_ann_info``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from _launch import load_config
from mmengine.config import DictAction

DEFAULT_PAIRS = ('truck,construction_vehicle', 'bus,trailer', 'motorcycle,bicycle')
MISSED = -1


def nearest_labels(gt_xy: np.ndarray, pred_xy: np.ndarray, pred_scores: np.ndarray, pred_labels: np.ndarray,
                   radius: float) -> np.ndarray:
    """For each ground-truth BEV centre (N, 2), the label of the highest-scoring prediction whose BEV centre lies
    within ``radius`` (inclusive), or ``MISSED``. Ties in score go to the earlier prediction."""
    gt_xy = np.asarray(gt_xy, dtype=np.float64).reshape(-1, 2)
    pred_xy = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    out = np.full(len(gt_xy), MISSED, dtype=np.int64)
    if not len(gt_xy) or not len(pred_xy):
        return out
    dist = np.linalg.norm(gt_xy[:, None, :] - pred_xy[None, :, :], axis=2)
    scores = np.where(dist <= radius, np.asarray(pred_scores, dtype=np.float64)[None, :], -np.inf)
    best = scores.argmax(1)  # first maximum
    hit = np.isfinite(scores[np.arange(len(gt_xy)), best])
    out[hit] = np.asarray(pred_labels, dtype=np.int64)[best[hit]]
    return out


def parse_pairs(pairs: Sequence[str], classes: Sequence[str]) -> list[tuple[str, str]]:
    """``'a,b'`` strings as class-name pairs; one clear error for a malformed pair or a class the dataset lacks."""
    out = []
    for text in pairs:
        names = tuple(n.strip() for n in text.split(','))
        if len(names) != 2 or names[0] == names[1] or not all(names):
            raise ValueError(f'a pair is two different class names "a,b", got {text!r}')
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise ValueError(f'classes {unknown} of pair {text!r} are not among the dataset classes {list(classes)}')
        out.append(names)
    return out


def confusion_table(gt_labels: np.ndarray, matched: np.ndarray, classes: Sequence[str],
                    pairs: Sequence[tuple[str, str]]) -> dict[str, dict]:
    """Per ground-truth class of ``pairs``: its object count ``n``, its ``partner_class`` and the shares labelled as
    itself (``own``), as its partner, as another class and missed. Shares sum to 1 (all 0 when ``n`` is 0)."""
    gt_labels, matched = np.asarray(gt_labels), np.asarray(matched)
    table = {}
    for a, b in pairs:
        for name, partner in ((a, b), (b, a)):
            mine = matched[gt_labels == classes.index(name)]
            n = len(mine)
            counts = {'own': int((mine == classes.index(name)).sum()),
                      'partner': int((mine == classes.index(partner)).sum()),
                      'missed': int((mine == MISSED).sum())}
            counts['other'] = n - sum(counts.values())
            table[name] = dict(partner_class=partner, n=n, **{k: (v / n if n else 0.0) for k, v in counts.items()})
    return table


def swap_rates(table: dict[str, dict], pairs: Sequence[tuple[str, str]]) -> dict[str, float | None]:
    """Per pair ``'a / b'``: of the pair's objects labelled as either class of the pair, the share labelled as the
    other one (0: the pair is told apart; ~0.5: chance). None when no object got a label of the pair."""
    out = {}
    for a, b in pairs:
        own = sum(table[c]['own'] * table[c]['n'] for c in (a, b))
        swapped = sum(table[c]['partner'] * table[c]['n'] for c in (a, b))
        out[f'{a} / {b}'] = swapped / (own + swapped) if own + swapped else None
    return out


def match_predictions(predictions: list, ground_truth: dict, radius: float,
                      max_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth labels and matched predicted labels over all samples. ``predictions``: DumpResults entries (dicts
    with ``sample_idx`` and ``pred_instances_3d``); ``ground_truth``: sample_idx -> (centres (N, 2), labels (N,))."""
    gts, found = [], []
    for pred in predictions:
        idx = int(pred['sample_idx'])
        if idx not in ground_truth:
            raise KeyError(f'prediction for sample_idx {idx}, which the test dataset does not have')
        xy, labels = ground_truth[idx]
        near = np.linalg.norm(xy, axis=1) <= max_range
        inst = pred['pred_instances_3d']
        boxes = inst['bboxes_3d']
        centres = np.asarray(boxes.gravity_center[:, :2] if hasattr(boxes, 'gravity_center') else boxes)
        gts.append(labels[near])
        found.append(nearest_labels(xy[near], centres.reshape(-1, 2), np.asarray(inst['scores_3d']),
                                    np.asarray(inst['labels_3d']), radius))
    if not gts:
        raise ValueError('no predictions to match: the test dataloader is empty')
    return np.concatenate(gts), np.concatenate(found)


def format_table(table: dict[str, dict]) -> str:
    lines = ['| ground truth | objects | as itself | as its partner | as another class | missed |',
             '|---|---|---|---|---|---|']
    for name, row in table.items():
        lines.append(f'| {name} | {row["n"]} | {row["own"]:.2f} | {row["partner"]:.2f} ({row["partner_class"]}) | '
                     f'{row["other"]:.2f} | {row["missed"]:.2f} |')
    return '\n'.join(lines)


def _ground_truth(dataset) -> dict:
    out = {}
    for i in range(len(dataset)):
        ann = dataset.get_ann_info(i)
        xy = ann['gt_bboxes_3d'].gravity_center[:, :2].numpy().astype(np.float64)
        out[int(dataset.get_data_info(i)['sample_idx'])] = (xy.reshape(-1, 2), np.asarray(ann['gt_labels_3d']))
    return out


def _dump_predictions(cfg, checkpoint: str, out_file: str) -> dict:
    """Run the test loop with the config's metrics and ``DumpResults``; returns the metrics."""
    from mmengine.runner import Runner
    cfg.load_from = checkpoint
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    cfg.test_evaluator = [*evaluators, dict(type='DumpResults', out_file_path=out_file)]
    cfg.log_level = 'WARNING'  # no environment dump; the metrics are printed below
    return Runner.from_cfg(cfg).test()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?', help='model weights (not needed with --predictions)')
    parser.add_argument('--predictions', help='a DumpResults pickle of this config\'s test split: no inference')
    parser.add_argument('--pairs', nargs='+', default=list(DEFAULT_PAIRS), help='class pairs "a,b"')
    parser.add_argument('--radius', type=float, default=2.0, help='BEV match distance in metres (nuScenes TP: 2)')
    parser.add_argument('--max-range', type=float, default=50.0, help='objects farther from the LiDAR are left out')
    parser.add_argument('--out', help='json with the table (and the settings)')
    parser.add_argument('--work-dir', help='the Runner\'s work dir (default: a temporary one)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='key=value overrides of the config')
    args = parser.parse_args()
    if (args.checkpoint is None) == (args.predictions is None):
        parser.error('give either a CHECKPOINT or --predictions')
    if args.radius <= 0 or args.max_range <= 0:
        parser.error('--radius and --max-range must be positive')
    if args.predictions and not Path(args.predictions).is_file():
        parser.error(f'--predictions {args.predictions} does not exist')
    with tempfile.TemporaryDirectory() as tmp:
        args.launcher, args.local_rank = 'none', 0
        if args.work_dir is None:
            args.work_dir = tmp
        cfg = load_config(args)
        from mmdet3d.registry import DATASETS
        from mmdet3d.utils import register_all_modules
        register_all_modules(init_default_scope=True)
        cfg_dataset = cfg.test_dataloader.dataset
        dataset = DATASETS.build(cfg_dataset)
        classes = list(dataset.metainfo['classes'])
        pairs = parse_pairs(args.pairs, classes)
        dump = args.predictions or str(Path(tmp) / 'predictions.pkl')
        metrics = {}
        if args.predictions is None:
            metrics = {k: float(v) for k, v in _dump_predictions(cfg, args.checkpoint, dump).items()
                       if isinstance(v, (int, float))}
            headline = {k: v for k, v in metrics.items() if k.split('/')[-1] in ('NDS', 'mAP', 'mIoU')}
            print('metrics: ' + ' '.join(f'{k} {v:.4f}' for k, v in (headline or metrics).items()))
        import mmengine
        gt_labels, matched = match_predictions(mmengine.load(dump), _ground_truth(dataset), args.radius,
                                               args.max_range)
    table = confusion_table(gt_labels, matched, classes, pairs)
    print(f'Labels of the look-alike objects within {args.max_range:g} m (best prediction within '
          f'{args.radius:g} m):')
    print(format_table(table))
    swaps = swap_rates(table, pairs)
    print('Swap rate (share of a pair\'s objects labelled within the pair that got the partner\'s label): ' +
          '; '.join(f'{k} {"-" if v is None else f"{v:.2f}"}' for k, v in swaps.items()))
    if args.out:
        Path(args.out).write_text(json.dumps(dict(config=args.config, checkpoint=args.checkpoint,
                                                  predictions=args.predictions, radius=args.radius,
                                                  max_range=args.max_range, metrics=metrics, table=table,
                                                  swap_rates=swaps),
                                             indent=1))


if __name__ == '__main__':
    main()
