"""Time the DP allocator and measure what the survivor-budget discretisation costs.

Part 1 times ``solve_levels`` / ``allocate`` on L layers x K levels x T bins (default 300 x 101 x 10^4; goal under
1 s on one core). Part 2 solves a medium case (default L=50) with several bin counts and reports the relative cost
gap to a much finer reference T: cost(T) / cost(T_ref) - 1, for the DP's level choice and for the final exact
allocation (curves linearly interpolated at the returned sparsities). Curves are random, monotone and convex-ish;
numels are uniform in [1e3, 1e6]. Run from the repository root with the package installed:
``python tools/benchmark_dp.py``.
"""
from __future__ import annotations

import os

for _var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[_var] = '1'  # before numpy is imported: the timing is for one core

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from mmprune4u_plugin.core.allocation import AllocationProblem, dp  # noqa: E402


def random_case(*, layers: int, levels: int, target: float, seed: int) -> tuple[AllocationProblem, np.ndarray,
                                                                                   np.ndarray]:
    """A problem with uniform random numels in [1e3, 1e6] and random increasing cost curves on 0..0.99."""
    rng = np.random.default_rng(seed)
    numels = rng.integers(1_000, 1_000_001, layers)
    grid = np.linspace(0.0, 0.99, levels)
    steps = rng.exponential(size=(layers, levels)) * (0.05 + grid ** 3) * rng.uniform(0.1, 10.0, (layers, 1))
    costs = np.cumsum(steps, axis=1) - steps[:, :1]
    names = tuple(f'layer{i}.weight' for i in range(layers))
    return AllocationProblem(names, numels, target), costs, grid


def final_cost(problem: AllocationProblem, sparsity: dict[str, float], costs: np.ndarray, grid: np.ndarray) -> float:
    """sum_l C_l(s_l) with the curves linearly interpolated."""
    return float(sum(np.interp(sparsity[n], grid, c) for n, c in zip(problem.names, costs)))


def best_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--layers', type=int, default=300)
    parser.add_argument('--levels', type=int, default=101)
    parser.add_argument('--bins', type=int, default=10_000)
    parser.add_argument('--target', type=float, default=0.7)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--gap-layers', type=int, default=50)
    parser.add_argument('--gap-bins', type=int, nargs='+', default=[1_000, 10_000, 100_000])
    parser.add_argument('--ref-bins', type=int, default=1_000_000)
    args = parser.parse_args()

    print(f'OMP_NUM_THREADS={os.environ["OMP_NUM_THREADS"]}  numpy {np.__version__}')
    print('\nDP time (best of %d)' % args.repeats)
    print(f'{"L":>5} {"K":>5} {"T":>9} {"target":>7} {"solve_levels s":>15} {"allocate s":>11}')
    for target in sorted({0.3, args.target, 0.95}):
        problem, costs, grid = random_case(layers=args.layers, levels=args.levels, target=target, seed=args.seed)
        t_solve, _ = best_time(lambda: dp.solve_levels(problem, costs, grid, num_bins=args.bins), args.repeats)
        t_alloc, _ = best_time(lambda: dp.allocate(problem, costs, grid, num_bins=args.bins), args.repeats)
        print(f'{args.layers:>5} {args.levels:>5} {args.bins:>9} {target:>7.2f} {t_solve:>15.3f} {t_alloc:>11.3f}')

    problem, costs, grid = random_case(layers=args.gap_layers, levels=args.levels, target=args.target,
                                       seed=args.seed + 1)
    rows = []
    for bins in [*args.gap_bins, args.ref_bins]:
        seconds, solution = best_time(lambda: dp.solve_levels(problem, costs, grid, num_bins=bins), 1)
        alloc = dp.allocate(problem, costs, grid, num_bins=bins)
        rows.append((bins, seconds, solution.cost, final_cost(problem, alloc, costs, grid)))
    ref_dp, ref_final = rows[-1][2], rows[-1][3]
    print(f'\nDiscretisation gap (L={args.gap_layers}, K={args.levels}, target={args.target}, '
          f'reference T={args.ref_bins})')
    print(f'{"T":>9} {"time s":>8} {"DP cost":>12} {"final cost":>12} {"gap DP":>10} {"gap final":>10}')
    for bins, seconds, dp_cost, fin in rows:
        print(f'{bins:>9} {seconds:>8.3f} {dp_cost:>12.6f} {fin:>12.6f} {dp_cost / ref_dp - 1:>10.2e} '
              f'{fin / ref_final - 1:>10.2e}')


if __name__ == '__main__':
    main()
