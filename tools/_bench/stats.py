"""Statistics of the benchmark's tables: mean and sample standard deviation, Pearson and Spearman correlation.

Pure Python (no NumPy / SciPy), so the figures in docs/benchmarks.md can be checked by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Summary:
    """Mean ± sample standard deviation of ``n`` values (``std`` is 0 for a single value)."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return format_mean_std(self)


def summarize(values: Sequence[float]) -> Summary:
    """mean = Σx / n, std = sqrt(Σ(x − mean)² / (n − 1)) (0 when n = 1). NaN / None values are an error: a cell
    that failed must be reported as missing, not silently averaged over."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError('`values` must hold at least one value, but got values: []')
    if any(not math.isfinite(x) for x in xs):
        raise ValueError(f'`values` must be finite, but got values: {xs}')
    n = len(xs)
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return Summary(mean, std, n)


def format_mean_std(s: Summary, digits: int = 3) -> str:
    """``0.123 ± 0.004``; a single value (no spread to report) prints as ``0.123 (n=1)``."""
    if s.n == 1:
        return f'{s.mean:.{digits}f} (n=1)'
    return f'{s.mean:.{digits}f} ± {s.std:.{digits}f}'


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """r = Σ(x − x̄)(y − ȳ) / sqrt(Σ(x − x̄)² Σ(y − ȳ)²); NaN when either side is constant."""
    x, y = _pair(xs, ys)
    mx, my = math.fsum(x) / len(x), math.fsum(y) / len(y)
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = math.fsum((a - mx) ** 2 for a in x)
    syy = math.fsum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return float('nan')
    return sxy / math.sqrt(sxx * syy)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the mean of their ranks (as scipy.stats.rankdata's 'average')."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson correlation of the (tie-averaged) ranks."""
    x, y = _pair(xs, ys)
    return pearson(ranks(x), ranks(y))


def _pair(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    x, y = [float(v) for v in xs], [float(v) for v in ys]
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f'correlation needs two sequences of equal length >= 2, but got lengths {len(x)}, {len(y)}')
    return x, y
