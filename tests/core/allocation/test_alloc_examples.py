"""Hand-checkable results of the baseline allocators (uniform, uniform+, global magnitude, LAMP, ERK)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmprune4u_plugin.core.allocation import AllocationProblem, select_global
from mmprune4u_plugin.core.allocation import erk, global_magnitude, lamp, uniform, uniform_plus


def problem(numels, target, s_min=None, s_max=None, shapes=None) -> AllocationProblem:
    names = tuple('abcdefgh'[:len(numels)])
    return AllocationProblem(names, np.array(numels), target, s_min, s_max, shapes)


def test_uniform() -> None:
    assert uniform.allocate(problem([10, 20, 30], 0.5)) == {'a': 0.5, 'b': 0.5, 'c': 0.5}
    # a is capped at 0.2 (2 zeros); b and c share 13 zeros at s = 0.65: 6.5 each, the odd one to the first
    assert uniform.allocate(problem([10, 10, 10], 0.5, s_max=[0.2, 1, 1])) == {'a': 0.2, 'b': 0.7, 'c': 0.6}
    assert uniform.allocate(problem([10, 10], 0.0)) == {'a': 0.0, 'b': 0.0}


def test_uniform_plus() -> None:
    # 18 zeros: a dense, then b = 1.0 and c capped at 0.8 (10 + 8)
    assert uniform_plus.allocate(problem([10, 10, 10], 0.6)) == {'a': 0.0, 'b': 1.0, 'c': 0.8}
    # 60 zeros, s = 6/11: b 54.5, c 5.45 -> the larger fraction takes the last zero
    assert uniform_plus.allocate(problem([10, 100, 10], 0.5)) == {'a': 0.0, 'b': 0.55, 'c': 0.5}
    # the problem's own tighter cap on the last layer wins
    assert uniform_plus.allocate(problem([10, 10, 10], 0.4, s_max=[1, 1, 0.5])) == {'a': 0.0, 'b': 0.7, 'c': 0.5}


def test_global_magnitude() -> None:
    weights = {'a': torch.tensor([[1.0, -2.0], [3.0, 4.0]]), 'b': torch.arange(10.0, 16.0)}
    assert global_magnitude.allocate(problem([4, 6], 0.4), weights) == {'a': 1.0, 'b': 0.0}
    assert global_magnitude.allocate(problem([4, 6], 0.6), weights) == {'a': 1.0, 'b': 2 / 6}
    # a may lose at most 2: the next smallest come from b
    assert global_magnitude.allocate(problem([4, 6], 0.4, s_max=[0.5, 1]), weights) == {'a': 0.5, 'b': 2 / 6}
    # b must lose 3 (its smallest), then the 1 left goes to the globally smallest candidate, a's 1.0
    assert global_magnitude.allocate(problem([4, 6], 0.4, s_min=[0, 0.5]), weights) == {'a': 0.25, 'b': 0.5}


def test_global_magnitude_ties_go_by_layer_order() -> None:
    weights = {'a': torch.tensor([1.0, 2.0, 3.0]), 'b': torch.tensor([2.0, 2.0])}
    # 4 zeros: 1, then the three 2.0 ties, a's first
    assert global_magnitude.allocate(problem([3, 2], 0.8), weights) == {'a': 2 / 3, 'b': 1.0}
    assert global_magnitude.allocate(problem([3, 2], 0.6), weights) == {'a': 2 / 3, 'b': 0.5}


def test_lamp_scores() -> None:
    # squares 1, 4, 9; tail sums 14, 13, 9
    np.testing.assert_array_equal(lamp.lamp_scores(np.array([1.0, 2.0, 3.0])), [1 / 14, 4 / 13, 1.0])
    np.testing.assert_array_equal(lamp.lamp_scores(np.array([0.0, 0.0, 2.0])), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(lamp.lamp_scores(np.zeros(3)), np.zeros(3))


def test_lamp() -> None:
    # scores a: 1/14, 4/13, 1; b: 1/2, 1
    weights = {'a': torch.tensor([3.0, -1.0, 2.0]), 'b': torch.tensor([2.0, -2.0])}
    p = [3, 2]
    assert lamp.allocate(problem(p, 0.4), weights) == {'a': 2 / 3, 'b': 0.0}
    assert lamp.allocate(problem(p, 0.6), weights) == {'a': 2 / 3, 'b': 0.5}
    assert lamp.allocate(problem(p, 0.8), weights) == {'a': 1.0, 'b': 0.5}  # tie at 1.0: layer a first
    # unlike global magnitude (which gives a 2/3, b 1.0 at 0.8), LAMP keeps the last weight of b


def test_lamp_is_invariant_to_layer_scale() -> None:
    w = torch.tensor([0.5, -3.0, 1.0, 2.0])
    p = problem([4, 4], 0.5)
    assert lamp.allocate(p, {'a': w, 'b': 1000 * w}) == {'a': 0.5, 'b': 0.5}
    assert global_magnitude.allocate(p, {'a': w, 'b': 1000 * w}) == {'a': 1.0, 'b': 0.0}


def test_select_global_validates() -> None:
    p = problem([2, 2], 0.5)
    with pytest.raises(ValueError, match='sorted ascending'):
        select_global([np.array([2.0, 1.0]), np.array([1.0, 2.0])], p)
    with pytest.raises(ValueError, match="layer 'b' must be 1-D with 2 entries"):
        select_global([np.array([1.0, 2.0]), np.array([1.0])], p)
    with pytest.raises(ValueError, match='NaN'):
        select_global([np.array([1.0, np.nan]), np.array([1.0, 2.0])], p)
    with pytest.raises(ValueError, match="no tensor for layer 'b'"):
        global_magnitude.allocate(p, {'a': torch.ones(2)})
    with pytest.raises(ValueError, match='has 3 elements'):
        lamp.allocate(p, {'a': torch.ones(2), 'b': torch.ones(3)})


def test_erk() -> None:
    # raw densities: a (10, 10): 20/100 = 0.2; b (100, 10): 110/1000 = 0.11. eps = 2.5: 0.5 and 0.275
    # -> kept 50 + 275 = 325, zeros 775 of 1100.
    p = problem([100, 1000], 775 / 1100, shapes=((10, 10), (100, 10)))
    assert erk.allocate(p) == {'a': 0.5, 'b': 0.725}
    # eps = 6: a would be 1.2, clipped to 1 (dense); b 0.66 -> zeros 340
    p = problem([100, 1000], 340 / 1100, shapes=((10, 10), (100, 10)))
    assert erk.allocate(p) == {'a': 0.0, 'b': 0.34}
    # 550 kept: unbounded, eps = 550 / 130 gives a density 0.846; with b's density >= 0.5 (s_max 0.5), b keeps
    # 500 and a keeps 50 (eps = 2.5, where b's own 0.275 is below its floor)
    p = problem([100, 1000], 0.5, s_max=[1, 0.5], shapes=((10, 10), (100, 10)))
    assert erk.allocate(p) == {'a': 0.5, 'b': 0.5}
    assert erk.allocate(problem([100, 1000], 0.5, shapes=((10, 10), (100, 10)))) == {'a': 0.15, 'b': 0.535}


def test_erk_needs_shapes() -> None:
    with pytest.raises(ValueError, match='problem.shapes: None'):
        erk.allocate(problem([4, 4], 0.5))
    with pytest.raises(ValueError, match=r'but got shape: \(0, 4\)'):
        erk.erk_raw_density((0, 4))
