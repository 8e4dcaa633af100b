"""tools/lookalike_confusion.py's matching and table on cases whose answer is known by hand."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
from lookalike_confusion import (MISSED, confusion_table, match_predictions, nearest_labels, parse_pairs,  # noqa: E402
                                 swap_rates)

CLASSES = ['car', 'truck', 'construction_vehicle', 'motorcycle', 'bicycle']


def test_nearest_labels_takes_the_best_score_within_the_radius_only():
    """GT 0 at the origin: predictions at 1 m (score 0.3, label 3) and 1.5 m (0.6, label 4) are in range, one at
    3 m (0.9, label 0) is not -> label 4. GT 1 at (10, 0): nothing within 2 m -> missed. GT 2 at (0, 5): a prediction
    exactly 2 m away counts (inclusive)."""
    gt = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0]])
    pred = np.array([[1.0, 0.0], [0.0, 1.5], [3.0, 0.0], [0.0, 7.0]])
    got = nearest_labels(gt, pred, np.array([0.3, 0.6, 0.9, 0.2]), np.array([3, 4, 0, 1]), radius=2.0)
    assert got.tolist() == [4, MISSED, 1]


def test_nearest_labels_breaks_score_ties_to_the_first_prediction_and_handles_empty_inputs():
    got = nearest_labels(np.zeros((1, 2)), np.zeros((2, 2)), np.array([0.5, 0.5]), np.array([3, 4]), 1.0)
    assert got.tolist() == [3]
    assert nearest_labels(np.zeros((2, 2)), np.zeros((0, 2)), [], [], 1.0).tolist() == [MISSED, MISSED]
    assert nearest_labels(np.zeros((0, 2)), np.zeros((1, 2)), [1.0], [0], 1.0).tolist() == []


def test_confusion_table_counts_own_partner_other_and_missed():
    """4 motorcycles: 2 right, 1 as bicycle, 1 missed. 2 bicycles: 1 as motorcycle, 1 as car. No truck, 1 CV right."""
    gt = np.array([3, 3, 3, 3, 4, 4, 2])
    matched = np.array([3, 3, 4, MISSED, 3, 0, 2])
    table = confusion_table(gt, matched, CLASSES, [('truck', 'construction_vehicle'), ('motorcycle', 'bicycle')])
    assert table['motorcycle'] == dict(partner_class='bicycle', n=4, own=0.5, partner=0.25, missed=0.25, other=0.0)
    assert table['bicycle'] == dict(partner_class='motorcycle', n=2, own=0.0, partner=0.5, missed=0.0, other=0.5)
    assert table['truck'] == dict(partner_class='construction_vehicle', n=0, own=0.0, partner=0.0, missed=0.0,
                                  other=0.0)
    assert table['construction_vehicle']['own'] == 1.0


def test_parse_pairs_rejects_malformed_pairs_and_unknown_classes():
    assert parse_pairs(['motorcycle,bicycle', ' truck , construction_vehicle'], CLASSES) == [
        ('motorcycle', 'bicycle'), ('truck', 'construction_vehicle')]
    for bad in ('motorcycle', 'motorcycle,motorcycle', 'a,b,c', 'motorcycle,'):
        with pytest.raises(ValueError, match='two different class names'):
            parse_pairs([bad], CLASSES)
    with pytest.raises(ValueError, match=r"\['bus'\]"):
        parse_pairs(['bus,car'], CLASSES)


class _Boxes:
    """Stands for LiDARInstance3DBoxes: only ``gravity_center`` is read."""

    def __init__(self, xy):
        self.gravity_center = np.concatenate([np.asarray(xy, dtype=float).reshape(-1, 2),
                                              np.zeros((len(xy), 1))], 1)


def test_match_predictions_leaves_out_far_objects_and_refuses_unknown_samples():
    """Sample 7: a motorcycle at 10 m found as bicycle, one at 60 m (beyond max_range 50) left out."""
    gt = {7: (np.array([[10.0, 0.0], [60.0, 0.0]]), np.array([3, 3]))}
    pred = [dict(sample_idx=7, pred_instances_3d=dict(bboxes_3d=_Boxes([[10.5, 0.0], [60.0, 0.0]]),
                                                      scores_3d=np.array([0.5, 0.9]), labels_3d=np.array([4, 3])))]
    labels, matched = match_predictions(pred, gt, radius=2.0, max_range=50.0)
    assert labels.tolist() == [3] and matched.tolist() == [4]
    with pytest.raises(KeyError, match='sample_idx 8'):
        match_predictions([dict(pred[0], sample_idx=8)], gt, 2.0, 50.0)
    with pytest.raises(ValueError, match='no predictions'):
        match_predictions([], gt, 2.0, 50.0)


def test_swap_rate_pools_both_classes_of_a_pair():
    """Motorcycles: 2 as themselves, 1 as bicycle; bicycles: 1 as motorcycle, 0 as themselves -> 2 swapped of the
    4 labelled within the pair = 0.5. Trucks and CVs: none labelled within the pair -> None."""
    gt = np.array([3, 3, 3, 3, 4, 4])
    matched = np.array([3, 3, 4, MISSED, 3, 0])
    pairs = [('truck', 'construction_vehicle'), ('motorcycle', 'bicycle')]
    rates = swap_rates(confusion_table(gt, matched, CLASSES, pairs), pairs)
    assert rates == {'truck / construction_vehicle': None, 'motorcycle / bicycle': 0.5}
