"""A run's object-storage output: locked, fetched when missing here, uploaded when done.

``RemoteOutput`` is what ``execute`` holds around a run whose
``output.path`` is an ``s3://``, ``gs://`` or ``az://`` URL: the remote lock
(so two runs of one shard never write at once, wherever they start), the
local copy fetched from the store when this machine has none (an ephemeral
runner continues where the last one stopped), and the atomic upload of the
compacted output at the end (``batchrun.checkpoint_upload`` uploads it at
checkpoints while the job sends).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from batchrun.objlock import RemoteLock
from batchrun.objstore import download, exists, upload
from batchrun.run_report import Ending

if TYPE_CHECKING:
    from batchrun.prepare import Prepared
    from batchrun.run_report import RunReport


class RemoteOutput:
    """The lock and the copies of one object-storage output."""

    def __init__(self, url: str | None, local: Path, share: str | None) -> None:
        self.url = url
        self.local = local
        self._lock = RemoteLock(url, share) if url is not None else None

    def open(self, run_id: str, notify: Callable[[str], None]) -> None:
        """Lock the output (``LockedError`` if held); fetch it if this machine has no copy."""
        if self.url is None or self._lock is None:
            return
        self._lock.acquire(run_id)
        if self._lock.taken_over:
            notify(f"warning: took over the lock of {self.url} left by {self._lock.taken_over}")
        if not self.local.exists() and not _has_parts(self.local) and exists(self.url):
            download(self.url, self.local)
            notify(f"continuing from {self.url} (no local copy in {self.local.parent})")

    def publish(self, run_id: str) -> None:
        """Upload the compacted output atomically (``OSError`` if the store refuses)."""
        if self.url is not None and self.local.exists():
            upload(self.local, self.url, run_id)

    def close(self) -> None:
        """Give the lock up."""
        if self._lock is not None:
            self._lock.release()


def _has_parts(local: Path) -> bool:
    from batchrun.store import part_files

    return bool(part_files(local))


def remote_output(prepared: Prepared) -> RemoteOutput:
    """The object-storage side of the output (doing nothing when its path is local)."""
    return RemoteOutput(prepared.remote, prepared.output, prepared.job.limits.share)


def publish(remote: RemoteOutput, report: RunReport, notify: Callable[[str], None]) -> None:
    """Upload the output; a refusal ends the run as a storage failure."""
    if remote.url is None:
        return
    try:
        remote.publish(report.run_id)
    except OSError as exc:
        report.ending = Ending.STORAGE
        report.reason = f"{exc}; the results are kept in {remote.local}, rerun to upload them"
        return
    notify(f"uploaded {report.state.rows:,} rows to {remote.url}")
