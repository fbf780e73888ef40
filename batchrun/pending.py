"""Remote work submitted and not yet collected, recorded beside the output by request key.

A video task (and, once merged, a provider batch) is submitted once and
collected later, perhaps by another run: ``PendingWork`` keeps one entry
per request key (the remote id and what is needed to collect it) in
``NAME.pending.json`` beside the output. Every change rewrites the file
atomically and synced (``durable.write_atomic``), so an entry added before
the submission's answer is used survives ``kill -9``, and a rerun finds it
and collects instead of submitting twice. Entries of requests whose rows
are written are dropped by ``prune`` at the start of the next run.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Container
from pathlib import Path
from typing import Any

from batchrun.durable import write_atomic

Entry = dict[str, Any]


def pending_path(output: Path) -> Path:
    """Where the pending work of ``output`` is recorded."""
    return output.with_name(f"{output.stem}.pending.json")


class PendingWork:
    """The pending entries of one output, read once and rewritten on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, Entry] = self._read()

    def _read(self) -> dict[str, Entry]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot read the pending work in {self.path}: {exc}") from None
        entries = data.get("entries") if isinstance(data, dict) else None
        return {str(k): v for k, v in entries.items()} if isinstance(entries, dict) else {}

    def get(self, key: str) -> Entry | None:
        """The entry of request ``key``, if its work is pending."""
        return self._entries.get(key)

    def entries(self) -> dict[str, Entry]:
        """Every pending entry by request key."""
        return dict(self._entries)

    def add(self, key: str, entry: Entry) -> None:
        """Record (or update) the pending work of request ``key``, durably, before returning."""
        self._entries[key] = entry
        self._write()

    def remove(self, keys: Collection[str]) -> None:
        """Forget the entries of ``keys`` (their rows are written)."""
        gone = [key for key in keys if key in self._entries]
        for key in gone:
            del self._entries[key]
        if gone:
            self._write()

    def prune(self, done: Container[str]) -> int:
        """Forget the entries whose rows are written; how many were forgotten."""
        gone = [key for key in self._entries if key in done]
        self.remove(gone)
        return len(gone)

    def _write(self) -> None:
        if not self._entries:
            self.path.unlink(missing_ok=True)
            return
        data = json.dumps({"entries": self._entries}, indent=1, sort_keys=True)
        write_atomic(self.path, data.encode())
