"""Properties every allocator must have, on many seeded random problems: exact target, bounds, keep-dense."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmprune4u_plugin.core.allocation import (ALLOCATORS, AllocationProblem, AllocatorName,
                                              InfeasibleAllocationError, get_allocator, problem_from_layers)
from mmprune4u_plugin.core.allocation import dp

NAMES = ('uniform', 'uniform_plus', 'global', 'lamp', 'erk', 'mmprune4u')
GRID = np.linspace(0.0, 1.0, 11)


def random_problem(rng: np.random.Generator) -> AllocationProblem | None:
    """1-6 layers with random shapes, bounds (some keep-dense) and a target inside the feasible range."""
    layers = int(rng.integers(1, 7))
    shapes = tuple(tuple(int(d) for d in rng.integers(1, 7, rng.integers(1, 4))) for _ in range(layers))
    numels = np.array([math.prod(s) for s in shapes])
    s_min = np.where(rng.random(layers) < 0.3, rng.uniform(0, 0.5, layers), 0.0)
    s_max = np.where(rng.random(layers) < 0.3, rng.uniform(0.5, 1.0, layers), 1.0)
    s_max[rng.random(layers) < 0.15] = 0.0
    s_min = np.minimum(s_min, s_max)
    lo = int(np.ceil(s_min * numels - 1e-9).sum())
    hi = min(int(np.floor(s_max * numels + 1e-9).sum()), int(numels.sum()) - 1)
    if lo > hi:
        return None
    target = int(rng.integers(lo, hi + 1)) / int(numels.sum())
    try:
        return AllocationProblem(tuple(f'l{i}' for i in range(layers)), numels, target, s_min, s_max, shapes)
    except InfeasibleAllocationError:  # a layer whose bounds hold no integer count
        return None


def run(name: str, problem: AllocationProblem, rng: np.random.Generator) -> dict[str, float]:
    """Call allocator ``name`` with random evidence of the kind it needs."""
    fn = get_allocator(name)
    if name in ('global', 'lamp'):
        gen = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
        return fn(problem, {n: torch.randn(int(k), generator=gen) for n, k in zip(problem.names, problem.numels)})
    if name == 'mmprune4u':
        return fn(problem, np.cumsum(rng.random((len(problem.names), GRID.size)), axis=1), GRID)
    return fn(problem)


def uniform_plus_feasible(problem: AllocationProblem) -> bool:
    s_max = problem.s_max.copy()
    s_max[-1] = min(s_max[-1], 0.8)
    s_max[0] = 0.0
    hi = np.floor(s_max * problem.numels + 1e-9).astype(np.int64)
    return bool(np.all(problem.min_zeros <= hi)) and problem.target_zeros <= hi.sum()


@pytest.mark.parametrize('name', NAMES)
def test_exact_target_and_bounds_on_random_problems(name: str) -> None:
    rng = np.random.default_rng(sum(map(ord, name)))
    checked = 0
    for _ in range(300):
        problem = random_problem(rng)
        if problem is None:
            continue
        if name == 'uniform_plus' and not uniform_plus_feasible(problem):
            with pytest.raises(InfeasibleAllocationError):
                run(name, problem, rng)
            continue
        result = run(name, problem, rng)
        s = np.array([result[n] for n in problem.names])
        k = np.rint(s * problem.numels).astype(np.int64)
        assert list(result) == list(problem.names)
        assert np.all((s >= 0) & (s <= 1))
        assert np.allclose(s * problem.numels, k, rtol=0, atol=1e-9)
        assert k.sum() == round(problem.target * problem.total)
        assert np.all(s >= problem.s_min - 1e-12) and np.all(s <= problem.s_max + 1e-12)
        assert np.all(s[problem.s_max == 0] == 0)
        if name == 'uniform_plus':
            assert s[0] == 0 and s[-1] <= 0.8
        checked += 1
    assert checked > 100


@pytest.mark.parametrize('name', NAMES)
def test_keep_dense_layer_stays_dense(name: str) -> None:
    shapes = ((2, 3), (8, 2, 2), (5, 5), (6, 6))
    problem = problem_from_layers(['a', 'b', 'c', 'd'], [math.prod(s) for s in shapes], 0.5, keep_dense=['c'],
                                  bounds={'b': (0.25, 0.75)}, shapes=shapes)
    result = run(name, problem, np.random.default_rng(0))
    assert result['c'] == 0.0
    assert 0.25 <= result['b'] <= 0.75
    assert sum(result[n] * k for n, k in zip(problem.names, problem.numels)) == pytest.approx(problem.target_zeros)


def test_infeasible_bounds_raise() -> None:
    with pytest.raises(InfeasibleAllocationError, match='allow only'):
        problem_from_layers(['a', 'b'], [10, 10], 0.8, bounds={'a': (0.0, 0.5)}, keep_dense=['b'])
    with pytest.raises(InfeasibleAllocationError, match='allow only'):
        problem_from_layers(['a', 'b'], [10, 10], 0.2, bounds={'a': (0.5, 1.0), 'b': (0.5, 1.0)})
    with pytest.raises(InfeasibleAllocationError, match='no integer zero count'):
        AllocationProblem(('a',), np.array([10]), 0.5, np.array([0.52]), np.array([0.58]))
    with pytest.raises(InfeasibleAllocationError, match='keep-dense'):
        problem_from_layers(['a', 'b'], [10, 10], 0.2, bounds={'a': (0.1, 1.0)}, keep_dense=['a'])


@pytest.mark.parametrize('name', NAMES)
def test_allocator_specific_infeasibility(name: str) -> None:
    """Feasible for the problem, but not under the allocator's own extra constraints (or none: then it works)."""
    problem = AllocationProblem(('first', 'mid', 'last'), np.array([50, 10, 10]), 0.5)
    if name == 'uniform_plus':  # 35 zeros, but first dense and last <= 80% leave 10 + 8
        with pytest.raises(InfeasibleAllocationError, match="uniform\\+ keeps layer 'first' dense"):
            run(name, problem, np.random.default_rng(0))
    elif name == 'mmprune4u':
        with pytest.raises(InfeasibleAllocationError, match='grid'):
            dp.allocate(problem, np.zeros((3, 3)), np.array([0.0, 0.1, 0.2]))
    else:
        problem = AllocationProblem(problem.names, problem.numels, 0.5, shapes=((50,), (10,), (10,)))
        assert sum(v * n for v, n in zip(run(name, problem, np.random.default_rng(0)).values(), (50, 10, 10))) == 35


@pytest.mark.parametrize('name, expected', [
    ('mmprune4u', 'dp'), ('rd', 'dp'), ('lamp', 'lamp'), ('global', 'global'), ('uniform', 'uniform'),
    ('uniform_plus', 'uniform_plus'), ('erk', 'erk'), (AllocatorName.RD, 'dp')])
def test_get_allocator(name: str, expected: str) -> None:
    assert get_allocator(name) is ALLOCATORS[expected]


def test_get_allocator_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="but got allocator: 'magnitude'"):
        get_allocator('magnitude')
    assert AllocatorName('mmprune4u') == 'mmprune4u' and str(AllocatorName.UNIFORM_PLUS) == 'uniform_plus'
