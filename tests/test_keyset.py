"""KeySet: the done keys of a rerun, as a set that costs 16 bytes a key."""

from __future__ import annotations

import hashlib

import polars as pl

from batchrun.keyset import KeySet


def _keys(count: int) -> list[str]:
    return [hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest() for i in range(count)]


def test_keyset_has_exactly_the_keys_it_was_given() -> None:
    """Every given key is in, a key that differs in its low half only is not, odd keys too."""
    keys = _keys(1000)
    done = KeySet(pl.Series([*keys[:500], "k2", keys[0]]))
    assert all(k in done for k in keys[:500])
    assert not any(k in done for k in keys[500:])
    assert keys[0][:16] + "0" * 16 not in done
    assert "k2" in done and "k3" not in done
    assert len(done) == 501
    assert done == {*keys[:500], "k2"}


def test_keyset_of_a_million_keys_is_small() -> None:
    """A million keys cost about 16 bytes each (a set of str costs over 100)."""
    done = KeySet(pl.Series(_keys(1_000_000)))
    packed = done._hi.itemsize * len(done._hi) + done._lo.itemsize * len(done._lo)
    assert packed == 16_000_000
    assert len(done) == 1_000_000
