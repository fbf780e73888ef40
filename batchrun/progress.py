"""Showing progress: a tqdm bar on a terminal, a plain line every few seconds otherwise.

``make_progress`` promises an object with ``update(result)`` and ``close()``
that never writes to stdout (stdout is kept for ``--json`` and tables).
"""

from __future__ import annotations

import sys
import time
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
    """One line every ``interval`` seconds on ``stream`` (for cron and logs)."""

    def __init__(
        self, total: int, stream: TextIO, interval: float = 5.0, label: str = "run"
    ) -> None:
        self.total = total
        self.label = label
        self.stream = stream
        self.interval = interval
        self.counts = _Counts()
        self._last = time.monotonic()

    def update(self, result: Result) -> None:
        """Count the result; print a line if the interval has passed."""
        self.counts.add(result)
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._print(now)

    def _print(self, now: float) -> None:
        c = self.counts
        rate = c.done / max(now - c.started, 1e-9)
        self.stream.write(
            f"{self.label} progress: {c.done}/{self.total} done, {rate:.1f} req/s, "
            f"{c.errors} errors, {c.tokens:,} tokens\n"
        )
        self.stream.flush()

    def close(self) -> None:
        """Print a last line."""
        self._print(time.monotonic())


class BarProgress:
    """A tqdm bar with error and token counts (for a terminal)."""

    def __init__(self, total: int, stream: TextIO, label: str = "run") -> None:
        from tqdm import tqdm

        self.counts = _Counts()
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


def make_progress(
    total: int, *, quiet: bool, stream: TextIO | None = None, label: str = "run"
) -> Progress:
    """A bar on a terminal, periodic lines otherwise, nothing when quiet; named ``label``."""
    out = stream or sys.stderr
    if quiet:
        return QuietProgress()
    if out.isatty():
        return BarProgress(total, out, label)
    return LineProgress(total, out, label=label)
