"""The one event loop of a command: started once, uvloop's where installed."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion in a new event loop, uvloop's where installed."""
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    # What exists now (modules, the plan) lives for the whole run: keep it out of the
    # collector's scans, and collect the young generation less often. Each request makes
    # many short-lived objects and few cycles.
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 20_000), *thresholds[1:])
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coroutine)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
