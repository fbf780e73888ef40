"""How a figure reads to a person: one set of rules for every human format.

``compare`` (table and markdown), the HTML report and the run summary show
numbers through these functions, so $0.000329 reads the same everywhere:
three significant digits for real numbers (money, latencies, scores), never
fewer digits than the integer part holds, thousands separators always, and
``None`` (or NaN) as ``MISSING``. Programs read ``--format json`` or
``csv`` instead, which carry the raw numbers.
"""

from __future__ import annotations

import math

MISSING = "-"
DIGITS = 3


def _absent(value: float | None) -> bool:
    return value is None or math.isnan(value)


def sig(value: float | None, digits: int = DIGITS) -> str:
    """``value`` to ``digits`` significant digits, with thousands separators.

    Integer parts are never rounded away (1234.6 reads 1,235, not 1,230), and
    small values keep their significant digits (0.000329 stays 0.000329).
    """
    if value is None or math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    # Round to the significant digits first, so 0.9996 becomes 1.00 and not 1.000.
    rounded = float(f"{value:.{digits - 1}e}")
    decimals = max(digits - 1 - math.floor(math.log10(abs(rounded))), 0)
    return f"{rounded:,.{decimals}f}"


def count(value: int | None) -> str:
    """A whole number with thousands separators (12,345)."""
    return MISSING if value is None else f"{value:,}"


def money(value: float | None) -> str:
    """US dollars to three significant digits: $0.000329, $12.3, $1,235."""
    if _absent(value):
        return MISSING
    assert value is not None
    return f"-${sig(-value)}" if value < 0 else f"${sig(value)}"


def seconds(value: float | None) -> str:
    """A duration in seconds to three significant digits: 0.0523 s, 1.25 s, 1,234 s."""
    return MISSING if _absent(value) else f"{sig(value)} s"


def percent(value: float | None) -> str:
    """A share in percent (0..100): one decimal at most, but never rounded to 0% or 100%
    unless it is exactly that (99.96 reads 99.96%, 100.0 reads 100%)."""
    if _absent(value):
        return MISSING
    assert value is not None
    for decimals in (1, 2, 3, 4):
        text = f"{value:,.{decimals}f}"
        if float(text.replace(",", "")) not in (0.0, 100.0) or value in (0.0, 100.0):
            break
    return f"{text.rstrip('0').rstrip('.')}%"


def _signed(text: str, value: float) -> str:
    return text if value <= 0 else f"+{text}"


def change_percent(value: float | None) -> str:
    """A relative change given as a share (0.638) as ``+63.8%``."""
    if _absent(value):
        return MISSING
    assert value is not None
    return _signed(f"{sig(100 * value)}%", value)


def change_money(value: float | None) -> str:
    """A change of cost in dollars: ``+$0.12``, ``-$0.000329``."""
    if _absent(value):
        return MISSING
    assert value is not None
    return _signed(money(value), value)


def change_seconds(value: float | None) -> str:
    """A change of a duration: ``+0.05 s``."""
    if _absent(value):
        return MISSING
    assert value is not None
    return _signed(seconds(value), value)


def change_points(value: float | None) -> str:
    """A change of a percentage, in percentage points: ``-5 pts``."""
    if _absent(value):
        return MISSING
    assert value is not None
    return _signed(f"{percent(value).removesuffix('%')} pts", value)


def change_number(value: float | None) -> str:
    """A change of a plain number (a score's mean): ``+0.05``."""
    if _absent(value):
        return MISSING
    assert value is not None
    return _signed(sig(value), value)
