"""tools/_bench/stats.py: mean ± std and correlations against values computed by hand."""
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
from _bench.stats import format_mean_std, pearson, ranks, spearman, summarize  # noqa: E402


def test_mean_and_sample_std_by_hand():
    s = summarize([1, 2, 3, 4])
    assert s.mean == 2.5 and s.n == 4
    assert s.std == pytest.approx(math.sqrt(5 / 3))  # Σ(x − 2.5)² = 5, n − 1 = 3
    assert format_mean_std(s) == '2.500 ± 1.291'


def test_single_value_has_no_spread_and_says_so():
    s = summarize([0.25])
    assert (s.mean, s.std, s.n) == (0.25, 0.0, 1)
    assert str(s) == '0.250 (n=1)'


@pytest.mark.parametrize('values, message', [([], 'at least one value'), ([1.0, float('nan')], 'finite'),
                                             ([1.0, float('inf')], 'finite')])
def test_bad_values_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        summarize(values)


def test_pearson_by_hand():
    # x̄ = 2, ȳ = 13/3: Σdxdy = 5, Σdx² = 2, Σdy² = 114/9 -> r = 5 / sqrt(228/9) = 15 / sqrt(228)
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(15 / math.sqrt(228))
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))  # a constant side has no correlation


def test_ranks_average_ties():
    assert ranks([10, 20, 20, 30]) == [1, 2.5, 2.5, 4]
    assert ranks([3, 1, 2]) == [3, 1, 2]


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)  # monotone, not linear
    # ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4): Σdxdy = 4.5, Σdx² = 4.5, Σdy² = 5 -> 4.5 / sqrt(22.5) = 3 / sqrt(10)
    assert spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(3 / math.sqrt(10))


def test_correlation_needs_two_equal_length_sequences():
    with pytest.raises(ValueError, match='equal length'):
        pearson([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match='>= 2'):
        spearman([1], [1])
