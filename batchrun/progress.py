"""Showing progress: a tqdm bar on a terminal, a plain line every few seconds otherwise.

``Progress`` receives every finished result. ``BarProgress`` is a labelled
tqdm bar that can print a message above itself; ``LineProgress`` hands a
line to its ``emit`` every ``interval`` seconds (the console stamps it with
the time and the run id). Neither writes to stdout, which is kept for
``--json`` and tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TextIO

from batchrun.store import Result


class Progress(Protocol):
    """Receives every finished result."""

    def update(self, result: Result) -> None: ...

    def close(self) -> None: ...


class _Counts:
    def __init__(self) -> None:
        self.done = 0
        self.errors = 0
        self.tokens = 0
        self.started = time.monotonic()

    def add(self, result: Result) -> None:
        self.done += 1
        if result.status != "ok":
            self.errors += 1
        self.tokens += result.total_tokens or 0


class QuietProgress:
    """Shows nothing."""

    def update(self, result: Result) -> None:
        """Ignore the result."""

    def close(self) -> None:
        """Nothing to close."""


class LineProgress:
    """One line every ``interval`` seconds, handed to ``emit`` (for cron and logs)."""

    def __init__(
        self,
        total: int,
        emit: Callable[[str], None],
        interval: float = 5.0,
        label: str = "run",
    ) -> None:
        self.total = total
        self.emit = emit
        self.interval = interval
        self.label = label
        self.counts = _Counts()
        self._last = time.monotonic()

    def update(self, result: Result) -> None:
        """Count the result; emit a line if the interval has passed."""
        self.counts.add(result)
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._print(now)

    def _print(self, now: float) -> None:
        c = self.counts
        rate = c.done / max(now - c.started, 1e-9)
        self.emit(
            f"{self.label} progress: {c.done:,}/{self.total:,} done, {rate:,.1f} req/s, "
            f"{c.errors:,} errors, {c.tokens:,} tokens"
        )

    def close(self) -> None:
        """Emit a last line."""
        self._print(time.monotonic())


class BarProgress:
    """A labelled tqdm bar with error and token counts (for a terminal)."""

    def __init__(self, total: int, stream: TextIO, label: str = "run") -> None:
        from tqdm import tqdm

        self.counts = _Counts()
        self.stream = stream
        self._bar = tqdm(
            total=total,
            file=stream,
            desc=label,
            unit="req",
            dynamic_ncols=True,
            mininterval=0.2,
        )
        self._pending = 0
        self._last = time.monotonic()

    def update(self, result: Result) -> None:
        """Advance the bar, refreshing its counts at most five times a second."""
        self.counts.add(result)
        self._pending += 1
        now = time.monotonic()
        if now - self._last >= 0.2:
            self._flush(now)

    def write(self, line: str) -> None:
        """Print ``line`` above the bar, which is drawn again below it."""
        self._bar.write(line, file=self.stream)

    def _flush(self, now: float) -> None:
        self._last = now
        self._bar.set_postfix(
            errors=self.counts.errors, tokens=f"{self.counts.tokens:,}", refresh=False
        )
        self._bar.update(self._pending)
        self._pending = 0

    def close(self) -> None:
        """Finish the bar."""
        self._flush(time.monotonic())
        self._bar.close()
