"""A judge's view of the run's ui: the same lines, its own label on progress displays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchrun.progress import Progress
    from batchrun.run import Ui


@dataclass
class Labelled:
    """A ui whose progress displays carry a fixed label."""

    inner: Ui
    label: str

    def notify(self, message: str) -> None:
        """Show one line, as the run's ui does."""
        self.inner.notify(message)

    def progress(self, total: int, label: str) -> Progress:
        """The run's progress display, labelled with this ui's label."""
        return self.inner.progress(total, self.label)

    def begin(self, run_id: str, description: str) -> None:
        """A judge's run keeps the main run's id in the log."""
