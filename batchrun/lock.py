"""One run per output: a lock file beside the output, held with ``flock``.

``RunLock.acquire`` promises that no other live process writes the same
output while the lock is held. The kernel drops an ``flock`` when its
process dies, even by ``kill -9``, so a lock file left by a dead run is
simply taken over (with a warning naming the run that left it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO

from batchrun.errors import LockedError


def lock_path(output: Path) -> Path:
    """Where the lock of ``output`` lives."""
    return output.parent / f".{output.name}.lock"


class RunLock:
    """An exclusive, process-lifetime lock on one output."""

    def __init__(self, output: Path) -> None:
        self.path = lock_path(output)
        self.output = output
        self.taken_over: str | None = None
        self._handle: IO[str] | None = None

    def acquire(self, run_id: str) -> None:
        """Take the lock or raise ``LockedError`` naming the run that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(self.path)
            handle.close()
            raise LockedError(
                f"{self.output} is being written by another batchrun run ({holder}); "
                "wait for it to finish, or give this run another output.path"
            ) from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous:
            self.taken_over = _describe_text(previous)
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "run_id": run_id,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
        )
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Give the lock up and remove the lock file."""
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None


def _describe(path: Path) -> str:
    try:
        return _describe_text(path.read_text())
    except OSError:
        return "unknown process"


def _describe_text(text: str) -> str:
    try:
        info = json.loads(text)
        return (
            f"pid {info['pid']} on {info['host']}, run {info['run_id']} started {info['started']}"
        )
    except (ValueError, KeyError, TypeError):
        return "unknown process"
