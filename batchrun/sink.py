"""Where a run's results go as they arrive: the journal, then Parquet parts.

``ResultSink.add`` keeps each result in memory and appends it to the
journal (``batchrun.journal``) with one ``os.write`` before it returns, so
a result is in the operating system's hands before the worker that got it
sends anything else. (Encoding the record costs more than the write
itself; batching the writes saved nothing measurable.) Every
``flush_every`` results or ``flush_seconds`` (checked by the run's
``tick``, every ``TICK_SECONDS``) the buffer is written as a Parquet part
(temporary name, fsync, rename), and the journal segment it replaces is
removed.

What survives a crash (the fsync policy):

- the process dies (``kill -9``, a crash, the OOM killer): every result
  handed to the operating system, that is every result ``add`` took. The
  next run folds the journal into a part.
- the machine dies (power loss, kernel panic): everything up to the last
  fsync. The journal is fsynced at most every ``fsync_seconds``
  (``output.fsync_seconds``, default 1 s; 0 fsyncs every write), parts and
  the output whenever they are written.

A failed write raises ``OSError`` naming the file; the run then stops
sending. After a failure the sink writes no more parts until ``flush``
(one last try) but still journals what arrives, if the disk lets it.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from batchrun.journal import JournalWriter, encode_results, header, segment_path
from batchrun.store import Result, parts_dir, results_frame, write_parquet_atomic

# How often the run calls ``tick`` (a part or an fsync when due).
TICK_SECONDS = 0.05


class ResultSink:
    """Buffers results, journals them as they arrive, and writes them as atomic Parquet parts."""

    def __init__(
        self,
        output: Path,
        run_id: str,
        job: str,
        *,
        flush_every: int = 5000,
        flush_seconds: float = 10.0,
        fsync_seconds: float = 1.0,
    ) -> None:
        self.output = output
        self.run_id = run_id
        self.job = job
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.fsync_seconds = fsync_seconds
        self.failed = False
        self._folder = parts_dir(output)
        self._head = header(run_id, job)
        self._buffer: list[Result] = []
        self._journaled = 0  # how many of the buffer's results are in the journal
        self._last_flush = self._last_sync = time.monotonic()
        self._sequence = 1
        self._journal = self._new_segment()

    def add(self, result: Result) -> None:
        """Keep a result and hand it to the OS in the journal; a part when the buffer is full."""
        buffer = self._buffer
        buffer.append(result)
        if len(buffer) >= self.flush_every and not self.failed:
            self.flush()
        else:
            self._write_journal()

    def tick(self) -> None:
        """Hand waiting results to the OS; write a part or fsync when their time has come."""
        if self.failed:
            return
        if self.due():
            self.flush()
            return
        self._write_journal()
        if time.monotonic() - self._last_sync >= self.fsync_seconds:
            self.sync()

    def due(self) -> bool:
        """Whether buffered results have waited a whole flush interval."""
        return bool(self._buffer) and time.monotonic() - self._last_flush >= self.flush_seconds

    def sync(self) -> None:
        """fsync the journal: what it holds now survives a power loss."""
        self._last_sync = time.monotonic()
        try:
            self._journal.sync()
        except OSError:
            self.failed = True
            raise

    def flush(self) -> None:
        """Write every buffered result as one part, then remove the journal segment it replaces.

        Tried even after a failure: if the part cannot be written either,
        the results not yet journaled are journaled if possible.
        """
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        frame = results_frame(self._buffer, self.run_id, self.job)
        part = self._folder / f"part-{self.run_id}-{self._sequence:06d}.parquet"
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            write_parquet_atomic(frame, part, statistics=False)
        except OSError:
            self.failed = True
            with contextlib.suppress(OSError):
                self._write_journal()
            raise
        self._journal.discard()
        self._buffer.clear()
        self._journaled = 0
        self._sequence += 1
        self._journal = self._new_segment()

    def close(self) -> None:
        """Close the journal segment (kept on disk if it holds results not in a part)."""
        self._journal.close()

    def _write_journal(self) -> None:
        start = self._journaled
        if start == len(self._buffer):
            return
        try:
            self._journal.write(encode_results(self._buffer[start:]))
            if self.fsync_seconds == 0:
                self._journal.sync()
        except OSError:
            self.failed = True
            raise
        self._journaled = len(self._buffer)

    def _new_segment(self) -> JournalWriter:
        return JournalWriter(segment_path(self._folder, self.run_id, self._sequence), self._head)
