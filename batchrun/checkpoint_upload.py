"""Uploads of an object-storage output while its run sends: one at each checkpoint.

A run whose ``output.path`` is an object-storage URL uploads its output
when it ends (``batchrun.remote``) and, every ``output.checkpoint_s``
seconds while it sends, at a checkpoint: what is done so far (the earlier
output and the parts written so far, folded as the final compaction folds
them, per-row scores applied and superseded rows left out) is written to a
snapshot beside the local copy and uploaded over the output's object,
atomically (``objstore.upload``). A reader sees the last checkpoint whole;
a run killed with ``kill -9`` leaves the rows of its last checkpoint there,
and a runner without the local copy starts from them.

A checkpoint never holds sending back: the snapshot and its upload run on
a thread of their own, one at a time, and a checkpoint that comes while
the last one is still going is skipped, so a slow store uploads less
often but never makes sending wait. A checkpoint with nothing new (no part
of this run yet, or no part since the last upload) uploads nothing. A
failed checkpoint is a warning: the upload at the end decides how the run
ends. The checkpoint still going when sending ends is waited for, so it
never reads a part the final compaction removes nor lands after the final
upload.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from batchrun.compaction import snapshot
from batchrun.finishing import file_metadata, output_finisher
from batchrun.objstore import upload
from batchrun.store import part_files
from batchrun.supersede import superseded_keys

if TYPE_CHECKING:
    from batchrun.prepare import Prepared


class Snapshotter:
    """One run's checkpoint: snapshot its output and upload it, when it holds something new."""

    def __init__(self, prepared: Prepared, url: str, run_id: str) -> None:
        self.prepared = prepared
        self.url = url
        self.run_id = run_id
        local = prepared.output
        self.target = local.with_name(f".{local.name}.checkpoint.parquet")
        self._uploaded: tuple[str, ...] = ()  # the parts the last upload held
        self._dropped: set[str] | None = None  # superseded keys: found once, at the first

    def __call__(self) -> int | None:
        """Upload what is done if this run wrote a part since the last time; the rows, or None.

        ``OSError`` when the snapshot cannot be written or the store refuses it.
        """
        output = self.prepared.output
        parts = tuple(path.name for path in part_files(output))
        mine = f"part-{self.run_id}-"
        if parts == self._uploaded or not any(name.startswith(mine) for name in parts):
            return None
        job = self.prepared.job
        if self._dropped is None:
            # Rows of superseded settings are all older than this run: finding them once will do.
            self._dropped = superseded_keys(output, self.prepared.plan)
        finisher = output_finisher(job.scores, None, self._dropped)
        try:
            rows = snapshot(
                output, self.target, self.prepared.plan.table, finisher, file_metadata(job.scores)
            )
            upload(self.target, self.url, self.run_id)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.target.unlink()
        self._uploaded = parts
        return rows


class Checkpoints:
    """Calls ``take`` every ``interval_s`` on a thread of its own, never twice at once.

    ``take`` returns the rows it uploaded (None: nothing new) or raises
    ``OSError``, which becomes a warning through ``notify``; any other
    exception is a bug and is raised by ``close``.
    """

    def __init__(
        self,
        interval_s: float,
        take: Callable[[], int | None],
        notify: Callable[[str], None],
        url: str,
    ) -> None:
        self.interval_s = interval_s
        self.url = url
        self.uploaded = 0  # checkpoints that uploaded
        self.skipped = 0  # checkpoints skipped because the last one was still going
        self._take = take
        self._notify = notify
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._going: asyncio.Future[int | None] | None = None
        self._timer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Take the first checkpoint ``interval_s`` from now, then every ``interval_s``."""
        self._timer = asyncio.create_task(self._every_interval())

    async def _every_interval(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_s)
            if self._going is not None and not self._going.done():
                self.skipped += 1
                continue
            self._settle()
            self._going = loop.run_in_executor(self._executor, self._take)

    def _settle(self) -> None:
        """Count the last checkpoint, or warn that it failed."""
        going, self._going = self._going, None
        if going is None:
            return
        error = going.exception()
        if error is None:
            self.uploaded += going.result() is not None
        elif isinstance(error, OSError):
            self._notify(
                f"warning: a checkpoint upload to {self.url} failed ({error}); "
                "the run goes on and uploads its output when it ends"
            )
        else:
            raise error

    async def close(self) -> None:
        """Take no more checkpoints; wait for the one going, if any."""
        try:
            if self._timer is not None:
                self._timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._timer
            if self._going is not None:
                await asyncio.wait([self._going])
                self._settle()
        finally:
            self._executor.shutdown(wait=False)
        if self.skipped:
            self._notify(
                f"{self.skipped} checkpoint(s) skipped while an upload to {self.url} "
                "was still going (a slow store)"
            )


@contextlib.asynccontextmanager
async def checkpoint_uploads(
    prepared: Prepared, run_id: str, notify: Callable[[str], None]
) -> AsyncIterator[Checkpoints | None]:
    """Upload checkpoints of an object-storage output while the body runs (none for a local one)."""
    interval = prepared.job.output.checkpoint_s
    if prepared.remote is None or interval <= 0:
        yield None
        return
    checkpoints = Checkpoints(
        interval, Snapshotter(prepared, prepared.remote, run_id), notify, prepared.remote
    )
    checkpoints.start()
    try:
        yield checkpoints
    finally:
        await checkpoints.close()
