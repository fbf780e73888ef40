"""Request deadlines kept by one sweep task, instead of an event-loop timer per request.

aiohttp bounds a request's total time with a timer it starts and cancels
for every request. ``Deadlines`` notes when each request is due instead,
and a single task looks at them all a few times per timeout: a request past
its deadline has its task cancelled, and ``expired`` tells that
cancellation from any other. A deadline fires up to one sweep period late:
a tenth of the timeout, at most a second.

What it buys, on the overhead figure of ``benchmarks/run.py``: see the
speed tricks in ARCHITECTURE.md. Streamed requests keep aiohttp's timers,
which also bound the silence between two reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class Deadlines:
    """Cancels tasks armed longer than ``timeout_s``, between ``start`` and ``stop``."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.period_s = min(1.0, max(timeout_s / 10.0, 0.005))
        # each armed task: when it is due, and how many cancellations it had when armed
        self._due: dict[asyncio.Task[object], tuple[float, int]] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sweeping, in the running loop."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def stop(self) -> None:
        """Stop sweeping."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def arm(self) -> asyncio.Task[object]:
        """Start the current task's deadline; ``disarm`` it when its request is done."""
        task = asyncio.current_task()
        assert task is not None, "Deadlines.arm runs inside a task"
        self._due[task] = (time.monotonic() + self.timeout_s, task.cancelling())
        return task

    def disarm(self, task: asyncio.Task[object]) -> None:
        """The task's request is done, however it ended."""
        self._due.pop(task, None)
        self._expired.discard(task)

    def expired(self, task: asyncio.Task[object]) -> bool:
        """Whether a ``CancelledError`` in ``task`` came from its deadline alone.

        True takes that cancellation back (the caller raises its timeout
        instead); False when someone else cancelled the task too, so the
        cancellation goes on.
        """
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() <= self._due[task][1]

    @property
    def armed(self) -> int:
        """How many requests are being timed."""
        return len(self._due)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            now = time.monotonic()
            for task, (due, _) in list(self._due.items()):
                if due <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()
