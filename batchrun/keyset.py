"""A set of request keys that costs 16 bytes a key, for reruns of very large jobs.

``KeySet`` promises set semantics (``in``, ``len``, iteration, ``==`` with a
set) over request keys. A key of 32 hex digits (every key ``request_key``
makes) is held as two 64-bit halves in sorted arrays and found by binary
search; any other string is kept in a small ordinary set. A million done
keys take 16 MB instead of the 110 MB of a set of strings, and are built
from a Polars column without a Python string per key.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator, Set

import polars as pl

_HALF = 16
_SLICE = 65_536
_LOW = 2**64 - 1
# A key held as two halves: 32 hex digits, as ``request_key`` makes them.
_REGULAR = "^[0-9a-f]{32}$"


class KeySet(Set[str]):
    """Request keys, compact: sorted 64-bit halves plus the odd keys as strings."""

    def __init__(self, keys: pl.Series | pl.LazyFrame) -> None:
        """The keys of a column, or of a lazy frame's first column.

        Polars reads each key as one 128-bit number, without a Python string
        per key: a million keys as strings would cost over 100 MB on their own.
        """
        lazy = keys.to_frame().lazy() if isinstance(keys, pl.Series) else keys
        lazy = lazy.select(pl.first().alias("key"))
        key = pl.col("key")
        regular = key.str.contains(_REGULAR)
        numbers, odd = pl.collect_all(
            [
                lazy.filter(regular).select(key.str.to_integer(base=16, dtype=pl.UInt128)),
                lazy.filter(~regular).select(key.unique()),
            ],
            engine="streaming",
        )
        self._odd = set(odd.get_column("key").to_list())
        # Sorted in one 128-bit column: about its own size again, where a sort by two
        # 64-bit columns (or a hash-based unique()) costs several times that.
        ordered = numbers.get_column("key").sort()
        del numbers
        self._hi, self._lo = _halves(ordered)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if len(key) != 2 * _HALF:
            return key in self._odd
        try:
            hi, lo = int(key[:_HALF], 16), int(key[_HALF:], 16)
        except ValueError:
            return key in self._odd
        index = bisect_left(self._hi, hi)
        while index < len(self._hi) and self._hi[index] == hi:
            if self._lo[index] == lo:
                return True
            index += 1
        return key in self._odd

    def __len__(self) -> int:
        return len(self._hi) + len(self._odd)

    def __iter__(self) -> Iterator[str]:
        for hi, lo in zip(self._hi, self._lo, strict=True):
            yield f"{hi:016x}{lo:016x}"
        yield from self._odd


def _halves(ordered: pl.Series) -> tuple[array[int], array[int]]:
    """Sorted 128-bit keys, each once, as arrays of their high and low 64 bits."""
    hi, lo = array("Q"), array("Q")
    previous = None
    for start in range(0, ordered.len(), _SLICE):
        values = ordered.slice(start, _SLICE).to_list()
        before = [previous, *values[:-1]]
        once = [value for value, last in zip(values, before, strict=True) if value != last]
        hi.extend(value >> 64 for value in once)
        lo.extend(value & _LOW for value in once)
        previous = values[-1]
    return hi, lo
