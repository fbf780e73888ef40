"""The ``--wait`` display: a bar of the pending batches' request counts, or a line per change.

On a terminal a tqdm bar on the console's stream moves with the requests
the provider reports finished; elsewhere (cron, logs) a line goes to the
run's ``notify`` whenever the counts change.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO


class CountsBar:
    """Shows how many of ``total`` batch requests the provider has finished."""

    def __init__(self, total: int, ui: Any, notify: Callable[[str], None]) -> None:
        self.total = total
        self.notify = notify
        self._last = -1
        self._bar: Any = None
        stream: TextIO = getattr(ui, "stream", sys.stderr)
        self._stream = stream
        if total and getattr(ui, "terminal", False) and not getattr(ui, "quiet", False):
            from tqdm import tqdm

            self._bar = tqdm(total=total, file=stream, desc="batch", unit="req", dynamic_ncols=True)

    def show(self, done: int, detail: str) -> None:
        """Move to ``done`` finished requests; ``detail`` names the counts by kind."""
        done = min(done, self.total)
        if self._bar is not None:
            self._bar.set_postfix_str(detail, refresh=False)
            self._bar.update(done - self._bar.n)
        elif done != self._last:
            self.notify(f"batch progress: {done:,}/{self.total:,} finished ({detail})")
        self._last = done

    def say(self, message: str) -> None:
        """A run message, above the bar while it is drawn."""
        if self._bar is not None:
            self._bar.write(f"batchrun: {message}", file=self._stream)
        else:
            self.notify(message)

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
