"""The journal: every result, appended as it arrives to a file beside the output.

A run writes its results to journal segments in the output's parts folder,
``journal-<run id>-<sequence>.jsonl``; each segment becomes the Parquet part
of the same sequence (``part-<run id>-<sequence>.parquet``) and is removed
once that part is on disk. A segment still there when a run starts belongs
to a run that died; ``batchrun.heal`` turns its complete records into its part.

Format (version 1): one record per line, newline-framed and checksummed::

    <CRC-32 of PAYLOAD as 8 lowercase hex digits> <PAYLOAD>\\n

PAYLOAD is compact UTF-8 JSON (no newline inside). The first record is the
header ``{"journal": 1, "run_id": ..., "job": ..., "fields": [...]}``; each
later record is one result, a JSON array of its values in ``fields`` order.
A record is complete when its line ends in a newline and its checksum
matches. A reader keeps the complete records and says what it could not
read: a torn last record (a power loss, a full disk) or damage elsewhere.

``JournalWriter`` hands records to the operating system with ``os.write``
on an ``O_APPEND`` descriptor: no buffer in the process, so once written a
record survives a crash of the process (``kill -9`` included), though not
of the machine. ``JournalWriter.sync`` fsyncs; the sink decides how often.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from batchrun.store import Result, sync_folder

VERSION = 1
_FIELDS = list(Result._fields)
_dumps = json.JSONEncoder(separators=(",", ":")).encode

try:  # orjson encodes a result four times as fast; the standard encoder is the fallback
    from orjson import dumps as _fast_dumps
except ImportError:  # pragma: no cover - orjson is optional
    _fast_dumps = None  # type: ignore[assignment]


def segment_path(folder: Path, run_id: str, sequence: int) -> Path:
    """The journal segment ``sequence`` of run ``run_id`` in the parts folder ``folder``."""
    return folder / f"journal-{run_id}-{sequence:06d}.jsonl"


def segment_files(folder: Path) -> list[Path]:
    """The journal segments in the parts folder ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(folder.glob("journal-*.jsonl"))


def part_of(segment: Path) -> Path:
    """The Parquet part a journal segment becomes."""
    return segment.with_name("part-" + segment.name.removeprefix("journal-")[:-6] + ".parquet")


def frame_record(payload: bytes) -> bytes:
    """One journal line: the checksum, a space, ``payload``, a newline."""
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def encode_results(results: list[Result]) -> bytes:
    """The journal lines of ``results``, ready to append."""
    crc32 = zlib.crc32
    lines = []
    for result in results:
        payload = _encode(result)
        lines.append(b"%08x %s\n" % (crc32(payload), payload))
    return b"".join(lines)


def _encode(result: Result) -> bytes:
    """One result as JSON: orjson where installed (NaN becomes null there), else ``json``."""
    if _fast_dumps is not None:
        try:
            return _fast_dumps(tuple(result))
        except TypeError:  # a string orjson refuses (a lone surrogate): json escapes it
            pass
    return _dumps(result).encode("ascii")


def header(run_id: str, job: str) -> bytes:
    """The first line of a segment: format version, run, job and the result fields."""
    document = {"journal": VERSION, "run_id": run_id, "job": job, "fields": _FIELDS}
    return frame_record(_dumps(document).encode("ascii"))


class JournalWriter:
    """Appends records to one segment, opened on the first write.

    A failed write raises ``OSError`` naming the segment and cuts the file
    back to its last whole record, so a full disk leaves no torn record.
    """

    def __init__(self, path: Path, head: bytes) -> None:
        self.path = path
        self._head = head
        self._fd: int | None = None
        self._size = 0
        self._dirty = False
        self._named = False  # whether the segment's name in its folder has been synced

    def write(self, data: bytes) -> None:
        """Hand ``data`` (whole records) to the operating system."""
        if not data:
            return
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
                self._fd = os.open(self.path, flags, 0o644)
            if self._size == 0:
                data = self._head + data
            view = memoryview(data)
            done = 0
            try:
                while done < len(data):
                    done += os.write(self._fd, view[done:])
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                raise
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        self._size += len(data)
        self._dirty = True

    def sync(self) -> None:
        """fsync what was written since the last sync (and, the first time, the folder)."""
        if self._fd is None or not self._dirty:
            return
        try:
            os.fsync(self._fd)
            if not self._named:
                sync_folder(self.path.parent)
                self._named = True
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        self._dirty = False

    def discard(self) -> None:
        """Close and remove the segment (its records are in a part on disk now)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def close(self) -> None:
        """Close the segment, keeping it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class JournalRead:
    """What one segment holds: its run and job, its complete results, and what was not read."""

    run_id: str
    job: str
    results: list[Result] = field(default_factory=list)
    problem: str | None = None  # None when every byte was read as a complete record


def read_journal(path: Path) -> JournalRead:
    """The complete records of a segment; ``problem`` says why the rest could not be read."""
    run_id = path.name.removeprefix("journal-")[:-6].rsplit("-", 1)[0]
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = lines.pop() != b""  # a whole file ends in a newline
    read = JournalRead(run_id=run_id, job="")
    fields: list[str] | None = None
    damaged = 0
    for line in lines:
        payload = _payload(line)
        value = _decode(payload) if payload is not None else None
        if fields is None and isinstance(value, dict) and value.get("journal") == VERSION:
            fields = [str(name) for name in value.get("fields", [])]
            read.run_id = str(value.get("run_id") or run_id)
            read.job = str(value.get("job") or "")
            continue
        result = _result(value, fields or _FIELDS)
        if result is None:
            damaged += 1
        else:
            read.results.append(result)
    problems = []
    if damaged:
        problems.append(f"{damaged:,} damaged record{'s' if damaged != 1 else ''}")
    if torn:
        problems.append("a torn last record")
    if problems:
        read.problem = " and ".join(problems)
    return read


def _payload(line: bytes) -> bytes | None:
    if len(line) < 10 or line[8:9] != b" ":
        return None
    payload = line[9:]
    try:
        expected = int(line[:8], 16)
    except ValueError:
        return None
    return payload if zlib.crc32(payload) == expected else None


def _decode(payload: bytes) -> object:
    try:
        return json.loads(payload)
    except ValueError:
        return None


def _result(value: object, fields: list[str]) -> Result | None:
    """A result from its record, or None when the record is not one."""
    if not isinstance(value, list) or len(value) != len(fields):
        return None
    try:
        if fields == _FIELDS:
            return Result(*value)
        known = {name: item for name, item in zip(fields, value, strict=True) if name in _FIELDS}
        return Result(**known)
    except TypeError:
        return None
