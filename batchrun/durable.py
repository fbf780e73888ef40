"""Writing a small file so that it is either whole or absent, even after ``kill -9``.

``write_atomic`` promises: the bytes go to a temporary name beside the
target, are synced, renamed into place, and the folder is synced, so a
crash leaves the old file or the new one, never a torn one.
``remove_durably`` removes a file and syncs its folder, so the removal
too outlives a crash.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` as ``path`` atomically and durably (raises ``OSError``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_folder(path.parent)


def remove_durably(path: Path) -> None:
    """Remove ``path`` if it is there, and sync its folder (raises ``OSError``)."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
