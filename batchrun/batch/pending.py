"""Remote work submitted and not yet collected, recorded beside the output.

The record is generic: each ``PendingWork`` is one unit of work handed to a
provider (a batch today, a video task later), keyed by the request keys it
answers. It is written to a temporary file, synced, renamed into place and
its folder synced, so it survives ``kill -9``. A unit is recorded *before*
it is submitted (``remote_id`` still empty, its ``submission`` id sent to
the provider as metadata), so a run killed while submitting leaves a trace
that the next run checks against the provider's list: adopted if the
provider has it, dropped (and submitted again) if not. Nothing is submitted
twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RECORD_VERSION = 1


def pending_path(output: Path) -> Path:
    """Where the pending work of ``output`` is recorded."""
    return output.parent / f".{output.name}.pending.json"


@dataclass
class PendingWork:
    """One unit of submitted work: what it answers, where it is, what the provider last said."""

    submission: str
    kind: str  # which lifecycle owns it: "openai-batch", "anthropic-batch", ...
    model: str
    keys: list[str]
    prepared_at: float
    remote_id: str | None = None
    submitted_at: float | None = None
    status: str = "submitting"  # submitting | submitted | cancelling
    counts: dict[str, int] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, kind: str, model: str, keys: list[str]) -> PendingWork:
        """A unit about to be submitted, with a fresh submission id."""
        return cls(uuid.uuid4().hex, kind, model, keys, time.time())

    @property
    def done(self) -> int:
        """Requests the provider has finished (answered or failed), as last seen."""
        return sum(n for name, n in self.counts.items() if name not in ("total", "processing"))


def describe(works: list[PendingWork], now: float | None = None) -> list[dict[str, Any]]:
    """Each unit as a status row: model, id, state, counts as last seen, age in hours."""
    moment = time.time() if now is None else now
    return [
        {
            "model": work.model,
            "batch_id": work.remote_id or "(unconfirmed)",
            "status": work.status,
            "requests": len(work.keys),
            "finished": work.done,
            "counts": {k: v for k, v in work.counts.items() if k != "total"},
            "age_h": round((moment - (work.submitted_at or work.prepared_at)) / 3600, 2),
        }
        for work in works
    ]


class PendingRecord:
    """The pending work of one output, loaded once and saved atomically on every change."""

    def __init__(self, output: Path) -> None:
        self.path = pending_path(output)
        self.works: list[PendingWork] = self._load()

    def _load(self) -> list[PendingWork]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return [PendingWork(**item) for item in data.get("works", [])]

    def keys(self) -> set[str]:
        """Every request key some pending unit answers."""
        return {key for work in self.works for key in work.keys}

    def add(self, work: PendingWork) -> None:
        """Record a unit (before it is submitted) and save."""
        self.works.append(work)
        self.save()

    def remove(self, work: PendingWork) -> None:
        """Forget a unit (collected, or never submitted) and save."""
        self.works = [w for w in self.works if w.submission != work.submission]
        self.save()

    def save(self) -> None:
        """Write the record: temporary file, fsync, rename, fsync of the folder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.works:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            _sync_folder(self.path.parent)
            return
        payload = {"version": RECORD_VERSION, "works": [asdict(w) for w in self.works]}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("w") as handle:
            json.dump(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
        _sync_folder(self.path.parent)


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
