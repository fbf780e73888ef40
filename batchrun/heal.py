"""Damaged files heal: before a run reads its results, every file is made whole.

``recover`` runs first in every run (``--fresh`` included). It folds the
journal segments a dead run left into Parquet parts, and checks the parts
and the output. A file that cannot be read whole (cut short by a crash of
the machine, a full disk, a copy cut short) is moved aside as
``NAME.damaged-<UTC time>``; what still reads is kept under its name (for
a journal segment its complete records, for a Parquet file the row groups
that read). Each such file gives one warning line; the run goes on and
sends again what was not kept. ``inspect`` says the same without changing
anything, for ``batchrun validate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
from polars.exceptions import PanicException

from batchrun.journal import part_of, read_journal, segment_files
from batchrun.store import (
    ROW_GROUP_ROWS,
    part_files,
    parts_dir,
    results_frame,
    write_parquet_atomic,
)

if TYPE_CHECKING:
    from batchrun.compaction import Carried

# What a rerun reads from the output before anything else: checked whole every run.
KEY_COLUMNS = ["request_key", "status", "error_type", "finished_at"]
_UNREADABLE = (pl.exceptions.PolarsError, OSError, PanicException)


@dataclass
class Damage:
    """A file that cannot be read whole, why, and what of it still reads."""

    path: Path
    problem: str
    kept: int
    unit: str  # "rows that read" or "complete records"
    frame: pl.DataFrame | None = None

    def warning(self, aside: Path) -> str:
        """The line a run prints once it has moved the file aside."""
        return (
            f"warning: {self.path} could not be read whole ({self.problem}); moved it to "
            f"{aside.name} and kept the {self.kept:,} {self.unit}; the rest is sent again"
        )

    def notice(self) -> str:
        """The line ``validate`` prints: what the next run will do."""
        return (
            f"warning: {self.path} cannot be read whole ({self.problem}); the next run moves "
            f"it aside and keeps the {self.kept:,} {self.unit}"
        )


def ready_output(output: Path, prompts: Carried, fresh: bool) -> list[str]:
    """Heal the output's files, and for ``--fresh`` set them aside; lines for the user."""
    from batchrun.compaction import set_aside

    lines = recover(output)
    if fresh:
        kept = set_aside(output, prompts)
        if kept is not None:
            lines.append(f"--fresh: the earlier results are kept as {kept}")
    return lines


def recover(output: Path) -> list[str]:
    """Make every results file of ``output`` whole; one warning line per file healed.

    Raises ``OSError`` when a kept part cannot be written (the damaged file
    is already aside by then, so no later read meets it).
    """
    warnings = []
    for segment in segment_files(parts_dir(output)):
        warning = _fold(segment)
        if warning is not None:
            warnings.append(warning)
    for path in [*part_files(output), output]:
        damage = _parquet_damage(path, None if path != output else KEY_COLUMNS)
        if damage is None:
            continue
        aside = move_aside(path)
        if damage.frame is not None and damage.frame.height:
            write_parquet_atomic(damage.frame, path)
        warnings.append(damage.warning(aside))
    return warnings


def inspect(output: Path) -> list[str]:
    """What ``recover`` would heal, as lines for the user; changes nothing."""
    found: list[Damage] = []
    for segment in segment_files(parts_dir(output)):
        read = read_journal(segment)
        if read.problem is not None:
            found.append(Damage(segment, read.problem, len(read.results), "complete records"))
    for path in [*part_files(output), output]:
        damage = _parquet_damage(path, None if path != output else KEY_COLUMNS)
        if damage is not None:
            found.append(damage)
    return [damage.notice() for damage in found]


def _fold(segment: Path) -> str | None:
    """Turn a segment left by a dead run into its part; a warning if it was damaged."""
    part = part_of(segment)
    if part.exists() and _parquet_damage(part, None) is None:
        segment.unlink()  # the part was written; the run died before removing the segment
        return None
    read = read_journal(segment)
    warning = None
    if read.problem is not None:
        aside = move_aside(segment)
        damage = Damage(segment, read.problem, len(read.results), "complete records")
        warning = damage.warning(aside)
    if read.results:
        write_parquet_atomic(results_frame(read.results, read.run_id, read.job), part)
    if read.problem is None:
        segment.unlink()
    return warning


def _parquet_damage(path: Path, columns: list[str] | None) -> Damage | None:
    """None if ``path`` is missing or reads whole (``columns`` only, if given); else the damage."""
    if not path.exists():
        return None
    try:
        _read_through(path, columns)
    except _UNREADABLE as exc:
        frame = _readable_rows(path)
        kept = frame.height if frame is not None else 0
        return Damage(path, _first_line(exc), kept, "rows that read", frame)
    return None


def _read_through(path: Path, columns: list[str] | None) -> None:
    """Read every row of ``path`` (``columns`` only, if given), a row group's worth at a time.

    Raises what Polars raises on the first part that does not read; holds one
    slice at a time, so checking a million rows costs no more than 20,000.
    """
    scan = pl.scan_parquet(path)
    if columns is not None:
        scan = scan.select(columns)
    total = int(scan.select(pl.len()).collect().item())
    for start in range(0, total, ROW_GROUP_ROWS):
        scan.slice(start, ROW_GROUP_ROWS).collect()


def _readable_rows(path: Path) -> pl.DataFrame | None:
    """The rows of the row groups that still read; None when the footer itself is lost."""
    try:
        total = int(pl.scan_parquet(path).select(pl.len()).collect().item())
    except _UNREADABLE:
        return None
    frames = []
    for start in range(0, total, ROW_GROUP_ROWS):
        try:
            frames.append(pl.scan_parquet(path).slice(start, ROW_GROUP_ROWS).collect())
        except _UNREADABLE:
            continue
    return pl.concat(frames, how="diagonal_relaxed") if frames else None


def move_aside(path: Path) -> Path:
    """Rename ``path`` to ``NAME.damaged-<UTC time>`` beside it; the new name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    number = 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{number}")
    path.replace(aside)
    return aside


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 120 else line[:117] + "..."
