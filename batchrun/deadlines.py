"""Per-request deadlines kept by one sweep, instead of a loop timer for every request.

A timer per request (aiohttp's ``ClientTimeout(total=...)`` or
``asyncio.timeout``) costs about as much as batchrun's own work on a
request. ``Deadlines`` notes when each request is due and checks them all a
few times per timeout from a single task: a request out past its deadline
is cancelled, and ``expired`` tells its ``CancelledError`` from any other. It
fires up to one sweep period late, a tenth of the timeout at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class Deadlines:
    """Cancels the tasks that stay armed longer than ``timeout_s``."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._period = min(1.0, max(timeout_s / 10.0, 0.005))
        self._due: dict[asyncio.Task[object], tuple[float, int]] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sweeping (in the running loop)."""
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
        """Start the current task's deadline; call ``disarm`` when its request is done."""
        task = asyncio.current_task()
        assert task is not None, "Deadlines.arm runs inside a task"
        self._due[task] = (time.monotonic() + self.timeout_s, task.cancelling())
        return task

    def disarm(self, task: asyncio.Task[object]) -> None:
        """The request is done, however it ended."""
        del self._due[task]
        self._expired.discard(task)

    def expired(self, task: asyncio.Task[object]) -> bool:
        """Whether a ``CancelledError`` in ``task`` is its deadline (and not to be passed on).

        True takes the cancellation back; the caller raises its timeout instead.
        False when the task was (also) cancelled by someone else.
        """
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() <= self._due[task][1]

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            now = time.monotonic()
            for task, (due, _) in list(self._due.items()):
                if due <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()
