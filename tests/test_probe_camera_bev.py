"""tools/probe_camera_bev.py's logistic probe on cases whose answer is known by hand."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
from probe_camera_bev import accuracy, fit_logistic  # noqa: E402


def test_separable_labels_are_all_recovered():
    """Label = (x0 > x1): a linear rule, so the fitted probe classifies every point right, on and off the fit set."""
    grid = torch.linspace(-1, 1, 9, dtype=torch.float64)
    x = torch.cartesian_prod(grid, grid)
    x = x[(x[:, 0] - x[:, 1]).abs() > 0.1]  # a margin
    y = (x[:, 0] > x[:, 1]).double()
    w = fit_logistic(x[::2], y[::2])
    assert accuracy(w, x[::2], y[::2]) == 1.0 and accuracy(w, x[1::2], y[1::2]) == 1.0
    assert w[0] > 0 > w[1]


def test_feature_unrelated_to_the_label_scores_the_majority():
    """x carries nothing: four points at each x, labels 1, 1, 1, 0 at every x. The best linear rule is the constant
    majority: 3/4 right."""
    x = torch.arange(5, dtype=torch.float64).repeat_interleave(4)[:, None]
    y = torch.tensor([1.0, 1.0, 1.0, 0.0] * 5, dtype=torch.float64)
    w = fit_logistic(x, y)
    assert accuracy(w, x, y) == 0.75
    assert abs(float(w[0])) < 1e-3  # no slope
