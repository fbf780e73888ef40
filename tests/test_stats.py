"""The statistics against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from batchrun.stats import (
    mcnemar,
    mean_interval,
    paired_test,
    quantile,
    signed_ranks,
    t_critical,
    t_quantile,
    wilcoxon,
    wilson,
)


def test_wilson_interval() -> None:
    """8 of 10: p = 0.8; by hand, centre 0.71674, half-width 0.22658 -> [0.4902, 0.9433]."""
    got = wilson(8, 10)
    assert got.mean == 0.8
    assert got.low == pytest.approx(0.4902, abs=1e-4)
    assert got.high == pytest.approx(0.9433, abs=1e-4)


def test_t_interval() -> None:
    """[2,4,4,4,5,5,7,9]: mean 5, s^2 = 32/7, se = 0.7559, t(7) = 2.365 -> [3.212, 6.788]."""
    got = mean_interval([2, 4, 4, 4, 5, 5, 7, 9])
    assert got.mean == 5
    assert got.low == pytest.approx(3.2122, abs=1e-3)
    assert got.high == pytest.approx(6.7878, abs=1e-3)


def test_binary_values_use_wilson() -> None:
    """A pass/fail score's interval is Wilson's, inside [0, 1]."""
    got = mean_interval([1.0] * 8 + [0.0] * 2)
    assert (got.low, got.high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert mean_interval([1.0, 1.0]).high == 1.0


def test_mcnemar_exact() -> None:
    """6 wins, 1 loss, 3 ties: p = 2 * P(X <= 1 | n = 7) = 2 * 8/128 = 0.125."""
    a = [1] * 6 + [0] + [1, 0, 0]
    b = [0] * 6 + [1] + [1, 0, 0]
    got = mcnemar(a, b)
    assert (got.wins, got.ties, got.losses) == (6, 3, 1)
    assert got.p_value == pytest.approx(0.125)
    assert not got.significant


def test_mcnemar_significant() -> None:
    """12 wins, 0 losses: p = 2 / 4096 < 0.05."""
    got = mcnemar([1] * 12, [0] * 12)
    assert got.p_value == pytest.approx(2 / 4096)
    assert got.significant


def test_wilcoxon_exact_all_positive() -> None:
    """d = 1..5, all positive: W+ = 15, P = 2 * 1/32 = 0.0625."""
    assert wilcoxon([1, 2, 3, 4, 5], [0] * 5).p_value == pytest.approx(0.0625)


def test_wilcoxon_exact_one_negative() -> None:
    """d = 1,-2,3,4,5: W- = 2; subsets of 1..5 summing to <= 2: 3; P = 2 * 3/32 = 0.1875."""
    assert wilcoxon([1, -2, 3, 4, 5], [0] * 5).p_value == pytest.approx(0.1875)


def test_wilcoxon_ties_normal_approximation() -> None:
    """d = 1,1,1,2,2,-3: ranks 2,2,2,4.5,4.5,-6; W+ = 15, mean 10.5, var 22.75 - 30/48,
    z = (4.5 - 0.5) / 4.7037 = 0.8504, p = 0.3951."""
    assert signed_ranks([1, 1, 1, 2, 2, -3]) == [2, 2, 2, 4.5, 4.5, -6]
    got = wilcoxon([1, 1, 1, 2, 2, -3], [0] * 6)
    assert got.test == "wilcoxon"
    assert got.p_value == pytest.approx(0.3951, abs=1e-4)


def test_zero_differences_are_ties() -> None:
    """Equal pairs are ties and leave the test (p = 1 when nothing differs)."""
    got = wilcoxon([1.5, 2.5], [1.5, 2.5])
    assert (got.ties, got.p_value) == (2, 1.0)


def test_paired_test_chooses_by_kind() -> None:
    """Pass/fail scores get McNemar, numbers get Wilcoxon."""
    assert paired_test([1, 0], [0, 0]).test == "mcnemar"
    assert paired_test([7.5, 3.0], [1.0, 2.0]).test.startswith("wilcoxon")


def test_empty_interval_is_nan() -> None:
    """No values: no interval, not a made-up 0."""
    assert math.isnan(mean_interval([]).mean)


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.7062), (7, 2.3646), (30, 2.0423), (31, 2.0395), (45, 2.0141), (61, 1.9996),
     (120, 1.9799)],
)  # fmt: skip
def test_finding3_exact_t_quantiles(df: int, expected: float) -> None:
    """t_0.975 matches the printed tables for every df, with no 1.96 fallback above 30."""
    assert t_critical(df) == pytest.approx(expected, abs=5e-5)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=5e-5)


def test_finding3_interval_uses_exact_t_above_30() -> None:
    """n = 32 values: the half-width is t(31) * se = 2.0395 * se, not 1.96 * se."""
    values = [float(i % 2) * 2 + 1 for i in range(32)]  # 1, 3, 1, 3, ...: sd 1.016, se 0.1796
    got = mean_interval(values)
    se = (sum((v - 2) ** 2 for v in values) / 31 / 32) ** 0.5
    assert got.high - got.mean == pytest.approx(2.0395 * se, abs=1e-4)


def test_quantile_interpolates_like_polars() -> None:
    """One quantile: linear between the two nearest, nulls left out, None when empty."""
    assert quantile([4.0, 1.0, None, 3.0, 2.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    assert quantile([], 0.5) is None
