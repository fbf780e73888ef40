"""``loop.run_async``: the one event loop, and the collector's threshold while it runs."""

from __future__ import annotations

import asyncio
import gc

import pytest

from batchrun.loop import GC_YOUNG_THRESHOLD, run_async


def test_the_young_generation_is_larger_while_the_loop_runs_and_restored_after() -> None:
    """The speed setting holds only inside the loop: a command's other work keeps Python's."""
    before = gc.get_threshold()

    async def inside() -> tuple[int, int, int]:
        await asyncio.sleep(0)
        return gc.get_threshold()

    during = run_async(inside())
    assert during == (GC_YOUNG_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before


def test_the_threshold_is_restored_when_the_coroutine_raises() -> None:
    """A failing command leaves the collector as it found it."""
    before = gc.get_threshold()

    async def fails() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_async(fails())
    assert gc.get_threshold() == before
