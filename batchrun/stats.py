"""The statistics behind ``compare`` and ``report``, written out so they can be checked by hand.

* ``mean_interval``: a mean with its 95% interval (Student's t with its exact
  quantile for every degree of freedom; Wilson's interval when every value
  is 0 or 1).
* ``t_quantile``: Student's t quantile, from the regularized incomplete beta
  function (a continued fraction), so no table and no normal fallback.
* ``quantile``: the one linear-interpolation quantile every figure uses.
* ``mcnemar``: the exact McNemar test for paired pass/fail results.
* ``wilcoxon``: the Wilcoxon signed-rank test for paired numbers (exact for
  small samples without ties, the normal approximation with tie and
  continuity corrections otherwise).
* ``paired_test``: the right one of the two, or no p-value at all (and the
  reason) when too few prompts, or too few that differ, make any test moot.

Every function takes one value per prompt: ``compare`` folds the samples
of a prompt into one value before calling them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

Z95 = 1.959963984540054
# Fewer prompts than this, or fewer that differ between the two sides, and a
# paired test says nothing worth a p-value.
MIN_PAIRS = 5
_EXACT_WILCOXON_MAX_N = 25


@dataclass(frozen=True)
class Interval:
    """A mean and its 95% interval over ``n`` values."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class PairedTest:
    """Wins, ties and losses of A against B, and the two-sided p-value of the test used."""

    wins: int
    ties: int
    losses: int
    p_value: float | None
    test: str
    # Why there is no p-value (too few prompts, or too few that differ), else None.
    untested: str | None = None

    @property
    def significant(self) -> bool:
        """Whether the difference is unlikely to be noise (p < 0.05); False without a test."""
        return self.p_value is not None and self.p_value < 0.05


def t_critical(df: int) -> float:
    """The two-sided 95% critical value of Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        return math.inf
    return t_quantile(0.975, df)


def incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        + a * math.log(x) + b * math.log1p(-x)
    )  # fmt: skip
    # The continued fraction converges fast only below the mean; use the symmetry above it.
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b
    return math.exp(log_front) * _beta_fraction(x, a, b) / a


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b), evaluated by the modified Lentz method."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` > 0 degrees of freedom, by bisection."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


class Sorted(Protocol):
    """Numbers in ascending order that can be read by position (a list, a Polars Series)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> float: ...


def quantile(values: Sequence[float | None], q: float) -> float | None:
    """The ``q`` quantile of the values, nulls and NaNs left out, interpolating linearly
    between the two nearest (numpy's and Polars' "linear"); None when no value is left."""
    return sorted_quantile(sorted(v for v in values if v is not None and not math.isnan(v)), q)


def sorted_quantile(ordered: Sorted, q: float) -> float | None:
    """``quantile`` of values already sorted, without nulls or NaNs; None when empty."""
    last = len(ordered) - 1
    if last < 0:
        return None
    position = q * last
    low = math.floor(position)
    below, above = ordered[low], ordered[min(low + 1, last)]
    return below + (above - below) * (position - low)


def is_binary(values: Sequence[float]) -> bool:
    """Whether every value is 0 or 1 (a pass/fail score)."""
    return all(v in (0.0, 1.0) for v in values)


def wilson(successes: int, n: int) -> Interval:
    """The share of successes with Wilson's 95% score interval."""
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    p = successes / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n)


def mean_interval(values: Sequence[float]) -> Interval:
    """The mean with a 95% interval: Wilson's for 0/1 values, Student's t otherwise."""
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if is_binary(values):
        return wilson(int(sum(values)), n)
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_critical(n - 1) * math.sqrt(variance / n)
    return Interval(mean, mean - half, mean + half, n)


def binomial_tail(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)


def mcnemar(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Exact McNemar test on paired pass/fail results (two-sided)."""
    wins = sum(1 for x, y in zip(a, b, strict=True) if x > y)
    losses = sum(1 for x, y in zip(a, b, strict=True) if x < y)
    ties = len(a) - wins - losses
    discordant = wins + losses
    if discordant == 0:
        return PairedTest(wins, ties, losses, 1.0, "mcnemar")
    p = min(1.0, 2 * binomial_tail(min(wins, losses), discordant))
    return PairedTest(wins, ties, losses, p, "mcnemar")


def signed_ranks(differences: Sequence[float]) -> list[float]:
    """Ranks of |d| for the non-zero differences (average ranks for ties), signed like d."""
    nonzero = [d for d in differences if d != 0]
    order = sorted(range(len(nonzero)), key=lambda i: abs(nonzero[i]))
    ranks = [0.0] * len(nonzero)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and abs(nonzero[order[j + 1]]) == abs(nonzero[order[i]]):
            j += 1
        average = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = average
        i = j + 1
    return [r if d > 0 else -r for r, d in zip(ranks, nonzero, strict=True)]


def wilcoxon(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Wilcoxon signed-rank test on paired numbers (two-sided; zero differences dropped)."""
    differences = [x - y for x, y in zip(a, b, strict=True)]
    wins = sum(1 for d in differences if d > 0)
    losses = sum(1 for d in differences if d < 0)
    ties = len(differences) - wins - losses
    ranks = signed_ranks(differences)
    n = len(ranks)
    if n == 0:
        return PairedTest(wins, ties, losses, 1.0, "wilcoxon")
    w_plus = sum(r for r in ranks if r > 0)
    tied = len({abs(r) for r in ranks}) < n
    if n <= _EXACT_WILCOXON_MAX_N and not tied:
        return PairedTest(wins, ties, losses, _wilcoxon_exact(w_plus, n), "wilcoxon-exact")
    mean = n * (n + 1) / 4
    tie_groups: dict[float, int] = {}
    for r in ranks:
        tie_groups[abs(r)] = tie_groups.get(abs(r), 0) + 1
    correction = sum(t**3 - t for t in tie_groups.values()) / 48
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24 - correction)
    if sd == 0:
        return PairedTest(wins, ties, losses, 1.0, "wilcoxon")
    z = (abs(w_plus - mean) - 0.5) / sd
    p = min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))
    return PairedTest(wins, ties, losses, p, "wilcoxon")


def _wilcoxon_exact(w_plus: float, n: int) -> float:
    """Two-sided exact p-value of W+ with ranks 1..n (no ties)."""
    total = n * (n + 1) // 2
    counts = [1] + [0] * total  # counts[s]: subsets of ranks with sum s
    for rank in range(1, n + 1):
        for s in range(total, rank - 1, -1):
            counts[s] += counts[s - rank]
    low = min(w_plus, total - w_plus)
    tail = sum(counts[s] for s in range(math.floor(low) + 1))
    return min(1.0, 2.0 * tail / (1 << n))


def paired_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """McNemar for pass/fail scores, Wilcoxon for numeric ones, one value per prompt.

    With fewer than ``MIN_PAIRS`` prompts, or fewer than that many on which
    the two sides differ, the result has no p-value and says why instead.
    """
    test = mcnemar(a, b) if is_binary(a) and is_binary(b) else wilcoxon(a, b)
    differing = test.wins + test.losses
    if len(a) < MIN_PAIRS:
        reason = f"too few prompts for a test ({len(a)} < {MIN_PAIRS})"
    elif differing < MIN_PAIRS:
        kind = "discordant prompts" if test.test == "mcnemar" else "prompts that differ"
        reason = f"too few {kind} for a test ({differing} < {MIN_PAIRS})"
    else:
        return test
    return replace(test, p_value=None, untested=reason)
