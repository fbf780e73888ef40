"""Polling remote work on a timer with backoff: the one loop of batches and video tasks.

``poll_until`` calls ``poll`` until it gives a value. Between calls it
sleeps for ``Backoff``'s delays: ``first_s``, growing by ``growth`` each
time, to at most ``most_s``. It gives ``None`` once ``timeout_s`` has passed
without a value. What a poll asks and does with the answer is the caller's
(the kind-specific part): the batch lane polls all its batches in one call
(``BatchLane.wait``), a video task is followed on its own
(``VideoTasks``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """The waits between polls: ``first_s``, times ``growth`` each time, at most ``most_s``."""

    first_s: float
    most_s: float
    growth: float = 1.5

    def delays(self) -> Iterator[float]:
        """The delays, one per wait, without end."""
        delay = self.first_s
        while True:
            yield delay
            delay = min(self.most_s, delay * self.growth)


async def poll_until(
    poll: Callable[[], Awaitable[T | None]],
    backoff: Backoff,
    *,
    sleep: Sleep = asyncio.sleep,
    timeout_s: float = math.inf,
    wait_first: bool = False,
) -> T | None:
    """``poll``'s first value (waiting first when ``wait_first``); None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delays = backoff.delays()
    if wait_first:
        await sleep(next(delays))
    while True:
        found = await poll()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            return None
        await sleep(next(delays))
