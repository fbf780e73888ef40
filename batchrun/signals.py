"""Stopping on SIGINT and SIGTERM: gracefully on the first, at once on the second."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def run_until_signalled(
    work: Coroutine[Any, Any, T],
    *,
    stop: Callable[[], None],
    grace_s: float,
    received: list[signal.Signals],
    notify: Callable[[str], None],
    interrupted: Callable[[], T],
) -> T:
    """Await ``work``; on the first signal call ``stop`` and allow ``grace_s`` to finish.

    A second signal, or the end of the grace, cancels ``work``; ``interrupted``
    then gives the result. Each signal is appended to ``received``.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        if len(received) == 1:
            notify(
                f"stopping: no new requests; up to {grace_s:g} s for those in flight "
                "(press Ctrl-C again to stop at once)"
            )
            stop()
            loop.call_later(grace_s, task.cancel)
        else:
            task.cancel()

    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (RuntimeError, ValueError, NotImplementedError):
            pass  # not the main thread: the caller handles interruption
    try:
        return await task
    except asyncio.CancelledError:
        if not received:
            raise
        return interrupted()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
