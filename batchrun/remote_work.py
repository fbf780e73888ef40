"""Remote work submitted and not yet collected: one durable record per output, for every kind.

A provider batch (many request keys) and a video task (one key) are each a
``RemoteJob``: its ``kind`` (``openai-batch``, ``anthropic-batch``,
``video-task``, ``videos-task``), the provider's id for it, the model, the
request keys it answers, when it was prepared and submitted, its state, and
what its kind keeps beside (``detail``). ``RemoteRecord`` holds every job of
one output in ``.NAME.parquet.pending.json`` beside it. A run reads it once,
at the start, so that pending work is collected instead of submitted again.
Every change rewrites it whole (temporary file, fsync, rename, fsync of the
folder: ``durable``), so what was submitted survives ``kill -9``:

- a batch is recorded before it is submitted (``remote_id`` still empty, to
  be reconciled against the provider's list if the run is cut off), and
  again once the provider names it;
- a task is recorded as soon as the gateway names it, before it is polled;
- a job is dropped once its results are in the journal.

Records of the older shapes are read as well. Version 1 of this file held
batches only (under ``works``). ``NAME.pending.json`` held video tasks by
request key (under ``entries``). The first write after reading that file
puts its tasks here and removes it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Container
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from batchrun.durable import remove_durably, write_atomic
from batchrun.errors import JobError

RECORD_VERSION = 2
TASK_KINDS = frozenset({"video-task", "videos-task"})
# What an old task entry kept beside its id: the file written, its type and seconds.
_TASK_DETAIL: tuple[str, ...] = ("artifact", "type", "seconds")


def record_path(output: Path) -> Path:
    """Where the pending remote work of ``output`` is recorded."""
    return output.parent / f".{output.name}.pending.json"


def legacy_tasks_path(output: Path) -> Path:
    """Where video tasks were recorded before this record held them (read once, then removed)."""
    return output.with_name(f"{output.stem}.pending.json")


def task_kind(api: str) -> str:
    """The kind of a video task submitted through ``api`` (``video`` or ``videos``)."""
    return f"{api}-task"


@dataclass
class RemoteJob:
    """One unit of submitted work: what it answers, where it is, what the provider last said."""

    submission: str  # batchrun's own id for it, sent as a batch's metadata
    kind: str  # which lifecycle owns it: "openai-batch", "video-task", ...
    model: str
    keys: list[str]
    prepared_at: float
    remote_id: str | None = None
    submitted_at: float | None = None
    status: str = "submitting"  # submitting | submitted | cancelling
    counts: dict[str, int] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, kind: str, model: str, keys: list[str]) -> RemoteJob:
        """A job about to be submitted, with a fresh submission id."""
        return cls(uuid.uuid4().hex, kind, model, keys, time.time())

    @property
    def done(self) -> int:
        """Requests the provider has finished (answered or failed), as last seen."""
        return sum(n for name, n in self.counts.items() if name not in ("total", "processing"))


class RemoteRecord:
    """The remote jobs of one output, read once and written whole on every change."""

    def __init__(self, output: Path) -> None:
        self.path = record_path(output)
        self.jobs: list[RemoteJob] = _read_jobs(self.path)
        self._legacy = legacy_tasks_path(output)
        self._migrating = self._adopt_legacy_tasks()
        self._by_key = {key: job for job in self.jobs for key in job.keys}

    def of(self, kinds: Collection[str]) -> list[RemoteJob]:
        """The jobs of these kinds."""
        return [job for job in self.jobs if job.kind in kinds]

    def keys(self, kinds: Collection[str]) -> set[str]:
        """Every request key a pending job of these kinds answers."""
        return {key for job in self.of(kinds) for key in job.keys}

    def find(self, key: str, kinds: Collection[str]) -> RemoteJob | None:
        """The pending job of these kinds that answers request ``key``, if any."""
        job = self._by_key.get(key)
        return job if job is not None and job.kind in kinds else None

    def add(self, job: RemoteJob) -> None:
        """Record a job (a batch before it is submitted) and save."""
        self._hold(job)
        self.save()

    def submitted(self, job: RemoteJob, remote_id: str, *, at: float | None = None) -> None:
        """The provider named ``job`` ``remote_id``: recorded (added if new) and saved."""
        job.remote_id, job.status = remote_id, "submitted"
        job.submitted_at = time.time() if at is None else at
        if all(other is not job for other in self.jobs):
            self._hold(job)
        self.save()

    def remove(self, job: RemoteJob) -> None:
        """Forget a job (collected, failed, or never submitted) and save."""
        self._drop([job])
        self.save()

    def settle(self, done: Container[str], kinds: Collection[str]) -> int:
        """Forget the jobs of these kinds whose every request has its row; how many."""
        gone = [job for job in self.of(kinds) if all(key in done for key in job.keys)]
        if gone:
            self._drop(gone)
            self.save()
        return len(gone)

    def _hold(self, job: RemoteJob) -> None:
        self.jobs.append(job)
        self._by_key.update(dict.fromkeys(job.keys, job))

    def _drop(self, jobs: list[RemoteJob]) -> None:
        dropped = {job.submission for job in jobs}
        self.jobs = [job for job in self.jobs if job.submission not in dropped]
        for job in jobs:
            for key in job.keys:
                if (held := self._by_key.get(key)) is not None and held.submission in dropped:
                    del self._by_key[key]

    def save(self) -> None:
        """Write the record durably (or remove it when empty); then drop a migrated old file."""
        if self.jobs:
            payload = {"version": RECORD_VERSION, "jobs": [asdict(job) for job in self.jobs]}
            write_atomic(self.path, json.dumps(payload).encode())
        else:
            remove_durably(self.path)
        if self._migrating:
            remove_durably(self._legacy)
            self._migrating = False

    def _adopt_legacy_tasks(self) -> bool:
        """Take the tasks of an old ``NAME.pending.json`` not held here yet; whether it exists."""
        entries = _read_legacy_entries(self._legacy)
        if entries is None:
            return False
        held = self.keys(TASK_KINDS)
        for key, entry in entries.items():
            task_id, api = entry.get("task_id"), entry.get("api")
            if key in held or task_id is None or not isinstance(api, str):
                continue  # already moved here, or nothing to collect by
            at = float(entry.get("at") or time.time())
            job = RemoteJob(
                uuid.uuid4().hex,
                task_kind(api),
                str(entry.get("model", "")),
                [key],
                prepared_at=at,
                remote_id=str(task_id),
                submitted_at=at,
                status="submitted",
                detail={name: entry[name] for name in _TASK_DETAIL if name in entry},
            )
            self.jobs.append(job)
        return True


def read_record(output: Path) -> RemoteRecord:
    """The record of ``output`` for a command: one that cannot be read is a ``JobError`` on
    ``output.path`` (one line, exit 2, nothing sent)."""
    try:
        return RemoteRecord(output)
    except OSError as exc:
        raise JobError(
            f"{exc}; it holds work already submitted (batches, video tasks): restore it, or "
            "move it aside and that work is submitted again",
            field="output.path",
        ) from None


def _read_json(path: Path) -> Any:
    """The JSON of ``path``; None when there is no such file; ``OSError`` when it cannot be read
    (a damaged record is never taken for "nothing pending": that would submit again)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise OSError(f"cannot read the pending work in {path}: {exc}") from None


def _read_jobs(path: Path) -> list[RemoteJob]:
    """The jobs of a record of version 2 (``jobs``) or 1 (``works``, batches only)."""
    data = _read_json(path)
    if data is None:
        return []
    version = data.get("version", 1) if isinstance(data, dict) else None
    items = data.get("jobs", data.get("works")) if isinstance(data, dict) else None
    if not isinstance(version, int) or version > RECORD_VERSION or not isinstance(items, list):
        raise OSError(
            f"cannot read the pending work in {path}: not a record this batchrun writes "
            f"(version {version}); use the batchrun that wrote it to collect that work"
        )
    try:
        return [RemoteJob(**item) for item in items]
    except TypeError as exc:
        raise OSError(f"cannot read the pending work in {path}: {exc}") from None


def _read_legacy_entries(path: Path) -> dict[str, dict[str, Any]] | None:
    """The entries of an old video task record by request key; None when there is none."""
    data = _read_json(path)
    if data is None:
        return None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        return {}
    return {str(key): entry for key, entry in entries.items() if isinstance(entry, dict)}


def describe(
    jobs: list[RemoteJob], now: float | None = None, id_name: str = "batch_id"
) -> list[dict[str, Any]]:
    """Each job as a status row: model, id (named ``id_name``), state, counts as last seen,
    age in hours."""
    moment = time.time() if now is None else now
    return [
        {
            "model": job.model,
            id_name: job.remote_id or "(unconfirmed)",
            "status": job.status,
            "requests": len(job.keys),
            "finished": job.done,
            "counts": {k: v for k, v in job.counts.items() if k != "total"},
            "age_h": round((moment - (job.submitted_at or job.prepared_at)) / 3600, 2),
        }
        for job in jobs
    ]
