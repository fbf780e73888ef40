"""The statistics behind ``compare`` and ``report``, written out so they can be checked by hand.

* ``mean_interval``: a mean with its 95% interval (Student's t; Wilson's
  interval when every value is 0 or 1).
* ``mcnemar``: the exact McNemar test for paired pass/fail results.
* ``wilcoxon``: the Wilcoxon signed-rank test for paired numbers (exact for
  small samples without ties, the normal approximation with tie and
  continuity corrections otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054
# Two-sided 95% critical values of Student's t for 1..30 degrees of freedom.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
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
    p_value: float
    test: str

    @property
    def significant(self) -> bool:
        """Whether the difference is unlikely to be noise (p < 0.05)."""
        return self.p_value < 0.05


def t_critical(df: int) -> float:
    """The two-sided 95% critical value of Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        return math.inf
    return _T95[df - 1] if df <= len(_T95) else Z95


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
    """McNemar for pass/fail scores, Wilcoxon for numeric ones."""
    if is_binary(a) and is_binary(b):
        return mcnemar(a, b)
    return wilcoxon(a, b)
