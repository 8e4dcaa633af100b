"""The DP allocator: optimal against brute force, monotone in the target, bounds, validation, a hand example."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from mmprune4u_plugin.core.allocation import AllocationProblem, InfeasibleAllocationError
from mmprune4u_plugin.core.allocation import dp

EXACT = 10 ** 9  # num_bins >= budget: one bin per weight, the DP is exact


def brute_force(problem: AllocationProblem, costs: np.ndarray, grid: np.ndarray) -> float:
    """min sum_l C_l(s_l) over grid levels with sum_l (n_l - round(n_l s_l)) <= N - round(S N); inf if none."""
    n = problem.numels
    survivors = n[:, None] - np.rint(n[:, None] * grid[None, :]).astype(np.int64)
    budget = problem.total - problem.target_zeros
    best = np.inf
    for ks in itertools.product(range(grid.size), repeat=len(n)):
        rows = np.arange(len(n))
        if survivors[rows, ks].sum() <= budget:
            best = min(best, float(costs[rows, ks].sum()))
    return best


def random_case(rng: np.random.Generator) -> tuple[AllocationProblem, np.ndarray, np.ndarray]:
    layers, levels = int(rng.integers(1, 5)), int(rng.integers(2, 6))
    grid = np.r_[0.0, np.sort(rng.choice(np.arange(1, 21), levels - 1, replace=False)) / 20]
    numels = rng.integers(1, 13, layers)
    costs = rng.integers(0, 21, (layers, levels)).astype(np.float64)  # integers: sums are exact in any order
    target = int(rng.integers(0, numels.sum())) / numels.sum()
    return AllocationProblem(tuple(f'l{i}' for i in range(layers)), numels, target), costs, grid


def test_dp_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    solved = 0
    for _ in range(200):
        problem, costs, grid = random_case(rng)
        best = brute_force(problem, costs, grid)
        if not np.isfinite(best):
            with pytest.raises(InfeasibleAllocationError):
                dp.solve_levels(problem, costs, grid, num_bins=EXACT)
            continue
        solution = dp.solve_levels(problem, costs, grid, num_bins=EXACT)
        rows = np.arange(len(problem.names))
        assert solution.cost == best
        assert costs[rows, solution.levels].sum() == best
        assert solution.zeros.sum() >= problem.target_zeros
        result = dp.allocate(problem, costs, grid, num_bins=EXACT)
        assert sum(round(result[n] * k) for n, k in zip(problem.names, problem.numels)) == problem.target_zeros
        solved += 1
    assert solved > 150


def test_dp_with_bounds_matches_brute_force_over_the_level_table() -> None:
    rng = np.random.default_rng(1)
    for _ in range(100):
        problem, costs, grid = random_case(rng)
        s_min = np.where(rng.random(len(problem.names)) < 0.5, rng.uniform(0, 0.4, len(problem.names)), 0.0)
        s_max = np.where(rng.random(len(problem.names)) < 0.5, rng.uniform(0.5, 1.0, len(problem.names)), 1.0)
        try:
            problem = AllocationProblem(problem.names, problem.numels, problem.target, s_min, s_max)
            solution = dp.solve_levels(problem, costs, grid, num_bins=EXACT)
        except InfeasibleAllocationError:
            continue
        lev_s, lev_k, lev_c = dp.level_table(problem, costs, grid)
        allowed = [np.flatnonzero(np.isfinite(row)) for row in lev_c]
        for row_s, row_k, ok, lo, hi in zip(lev_s, lev_k, allowed, problem.min_zeros, problem.max_zeros):
            assert np.all((row_k[ok] >= lo) & (row_k[ok] <= hi))
        budget = problem.total - problem.target_zeros
        best = min(sum(lev_c[l, k] for l, k in enumerate(ks)) for ks in itertools.product(*allowed)
                   if sum(problem.numels[l] - lev_k[l, k] for l, k in enumerate(ks)) <= budget)
        assert solution.cost == pytest.approx(best, rel=1e-12, abs=1e-12)
        assert np.all(solution.sparsities >= s_min) and np.all(solution.sparsities <= s_max)


def test_dp_cost_is_monotone_in_the_target() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        problem, costs, grid = random_case(rng)
        costs, grid = np.cumsum(costs, axis=1), np.r_[grid[:-1], 1.0]
        previous = -np.inf
        for zeros in range(problem.total):
            p = AllocationProblem(problem.names, problem.numels, zeros / problem.total)
            cost = dp.solve_levels(p, costs, grid, num_bins=EXACT).cost
            assert cost >= previous
            previous = cost


def test_coarse_bins_never_miss_the_target() -> None:
    rng = np.random.default_rng(3)
    for _ in range(100):
        problem, costs, grid = random_case(rng)
        grid = np.r_[grid[:-1], 1.0]
        for bins in (1, 3, 7):
            solution = dp.solve_levels(problem, costs, grid, num_bins=bins)
            assert solution.zeros.sum() >= problem.target_zeros
            result = dp.allocate(problem, costs, grid, num_bins=bins)
            assert sum(round(result[n] * k) for n, k in zip(problem.names, problem.numels)) == problem.target_zeros


def test_convex_curves_by_hand() -> None:
    grid = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    costs = np.stack([grid ** 2, 4 * grid ** 2])  # a: s^2, b: 4 s^2
    p = AllocationProblem(('a', 'b'), np.array([100, 100]), 0.5)
    # 100 zeros: (0.75, 0.25) costs 0.5625 + 0.25; (1, 0) costs 1; (0.5, 0.5) costs 1.25
    solution = dp.solve_levels(p, costs, grid)
    assert solution.levels.tolist() == [3, 1] and solution.cost == 0.8125
    assert dp.allocate(p, costs, grid) == {'a': 0.75, 'b': 0.25}
    # 90 zeros: same levels, 10 surplus. Giving back from a (75 -> 50) saves (0.5625 - 0.25) / 25 = 0.0125 per
    # weight, from b (25 -> 0) 0.25 / 25 = 0.01: a gives all 10 back.
    p = AllocationProblem(('a', 'b'), np.array([100, 100]), 0.45)
    assert dp.allocate(p, costs, grid) == {'a': 0.65, 'b': 0.25}
    # b kept dense: a takes everything; bounds inserted as levels (a's s_min 0.6 is not on the grid)
    p = AllocationProblem(('a', 'b'), np.array([100, 100]), 0.3, np.array([0.6, 0.0]), np.array([1.0, 0.0]))
    assert dp.allocate(p, costs, grid) == {'a': 0.6, 'b': 0.0}
    assert dp.solve_levels(p, costs, grid).cost == pytest.approx(0.25 + 0.1 * (0.5625 - 0.25) / 0.25)


@pytest.mark.parametrize('costs, grid, kwargs, message', [
    (np.zeros((2, 3)), np.array([0.1, 0.5, 0.9]), {}, r'`grid` must increase strictly from 0'),
    (np.zeros((2, 3)), np.array([0.0, 0.5, 0.5]), {}, r'`grid` must increase strictly from 0'),
    (np.zeros((2, 3)), np.array([0.0, 0.5, 1.5]), {}, r'`grid` must increase strictly from 0'),
    (np.zeros((2, 3)), np.zeros((1, 3)), {}, r'`grid` must be a non-empty finite 1-D array'),
    (np.zeros((3, 3)), np.array([0.0, 0.5, 1.0]), {}, r'`costs` must have shape \(2, 3\).*\(3, 3\)'),
    (np.array([[0, 1, 2], [0, np.nan, 1]]), np.array([0.0, 0.5, 1.0]), {}, r"`costs` of layer 'b' must be finite"),
    (np.array([[0, np.inf, 2], [0, 1, 1]]), np.array([0.0, 0.5, 1.0]), {}, r"`costs` of layer 'a' must be finite"),
    (np.zeros((2, 3)), np.array([0.0, 0.5, 1.0]), {'num_bins': 0}, r'`num_bins` must be a positive int.*: 0'),
    (np.zeros((2, 3)), np.array([0.0, 0.5, 1.0]), {'num_bins': 2.5}, r'`num_bins` must be a positive int.*: 2.5'),
])
def test_bad_args(costs, grid, kwargs, message) -> None:
    p = AllocationProblem(('a', 'b'), np.array([10, 10]), 0.5)
    with pytest.raises(ValueError, match=message):
        dp.allocate(p, costs, grid, **kwargs)


def test_infeasible_grid() -> None:
    grid, costs = np.array([0.0, 0.25, 0.5]), np.zeros((2, 3))
    with pytest.raises(InfeasibleAllocationError, match='grid max 0.5'):
        dp.allocate(AllocationProblem(('a', 'b'), np.array([10, 10]), 0.8), costs, grid)
    p = AllocationProblem(('a', 'b'), np.array([10, 10]), 0.8, np.array([0.6, 0.0]), np.array([1.0, 1.0]))
    with pytest.raises(InfeasibleAllocationError, match="layer 'a' has s_min 0.6 above the grid"):
        dp.allocate(p, costs, grid)
