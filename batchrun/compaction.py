"""Compaction: parts and the earlier output folded into one output, one row per key.

``compact`` folds the output's Parquet parts and any earlier output into
``output.path`` (one row per request key, the ok row kept over a failed
one, then the latest), streaming batch by batch into a temporary file that
replaces the output atomically; the parts go after that. ``snapshot``
makes the same fold into another file and leaves the output and its parts
as they are (a checkpoint of a run still going). ``current_ok`` reads the ok
rows the output would hold, without writing anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import polars as pl
from polars.io.plugins import register_io_source

from batchrun.dataset import PROMPT_ID, find_rows
from batchrun.store import (
    INPUT_PREFIX,
    RESULT_SCHEMA,
    ROW_GROUP_ROWS,
    SCORE_PREFIX,
    part_files,
    parts_dir,
    replace_atomic,
)

_BATCH_ROWS = 20_000


Transform = Callable[[pl.DataFrame], pl.DataFrame]


def compact(
    output: Path,
    prompts: pl.DataFrame | Carried | None,
    transform: Transform | None = None,
    metadata: dict[str, str] | None = None,
) -> int:
    """Fold parts and the earlier output into ``output``: one row per request key.

    Part rows get the carried input columns of their prompt from ``prompts``.
    Per key the ok row wins, then the latest. ``transform`` (scores) is
    applied to every batch on the same pass, so the output is written once;
    ``metadata`` goes into the file's key-value metadata (score directions).
    Rows stream batch by batch into a temporary file that then replaces the
    output atomically, so memory holds the keys and one batch, not the
    results. The parts are removed after that. Returns the rows written.
    """
    parts = part_files(output)
    if not parts and output.exists() and transform is None:
        return pl.scan_parquet(output).select(pl.len()).collect().item()  # type: ignore[no-any-return]
    written = _fold_into(output, output, parts, prompts, transform, metadata)
    for part in parts:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    with contextlib.suppress(OSError):
        parts_dir(output).rmdir()
    return written


def snapshot(
    output: Path,
    target: Path,
    prompts: pl.DataFrame | Carried | None,
    transform: Transform | None = None,
    metadata: dict[str, str] | None = None,
) -> int:
    """Write into ``target`` what ``compact`` would write into ``output``; the rows written.

    The output and its parts are left as they are, so a run still writing
    parts can be snapshotted: parts appear whole (renamed into place) and
    none is removed before the run compacts. ``target`` is replaced
    atomically.
    """
    return _fold_into(output, target, part_files(output), prompts, transform, metadata)


def _fold_into(
    output: Path,
    target: Path,
    parts: list[Path],
    prompts: pl.DataFrame | Carried | None,
    transform: Transform | None,
    metadata: dict[str, str] | None,
) -> int:
    """Fold ``parts`` and the earlier ``output`` into ``target`` (atomically); the rows written."""
    sources = ([output] if output.exists() else []) + parts
    carried = _Attach(prompts) if prompts is not None else None
    schema = _target_schema(sources, carried.schema if carried is not None else None)
    if transform is not None:
        # The columns a transform adds (score_<name>) take their place in the output.
        added = {**transform(pl.DataFrame(schema=schema)).schema, **schema}
        schema = {name: added[name] for name in _column_order(list(added))}
    # One run's parts into an empty output cannot hold a key twice: skip the key table.
    masks = {} if not output.exists() and len(_part_runs(parts)) <= 1 else _keep_masks(sources)
    fold = _Fold(output, sources, masks, schema, carried, transform)

    def write(tmp: Path) -> None:
        # Polars pulls the batches one at a time and streams them into the file.
        register_io_source(fold.source, schema=schema).sink_parquet(
            tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS, metadata=metadata
        )

    target.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(write, target)
    return fold.written


@dataclass
class _Fold:
    """One compaction's pass over its sources, batch by batch, in the output's schema."""

    output: Path
    sources: list[Path]
    masks: dict[int, pl.Series]
    schema: dict[str, pl.DataType]
    carried: _Attach | None
    transform: Transform | None
    written: int = 0

    def source(self, *_: object) -> Iterator[pl.DataFrame]:
        """The batches, for Polars' IO source; counts the rows written."""
        for frame in self._batches():
            self.written += frame.height
            yield frame

    def _batches(self) -> Iterator[pl.DataFrame]:
        pending: list[pl.DataFrame] = []
        for index, path in enumerate(self.sources):
            mask = self.masks.get(index)
            if path == self.output:
                # The earlier output can be large: read it a batch at a time.
                offset = 0
                for frame in pl.scan_parquet(path).collect_batches(chunk_size=_BATCH_ROWS):
                    height = frame.height
                    if mask is not None:
                        frame = frame.filter(mask.slice(offset, height))
                    offset += height
                    frame = self.transform(frame) if self.transform else frame
                    yield _conform(frame, self.schema)
                continue
            # Parts are small (one flush each): gather them into batches of about
            # _BATCH_ROWS, so the per-batch work is done once per batch, not per part.
            frame = pl.read_parquet(path)
            pending.append(frame.filter(mask) if mask is not None else frame)
            if sum(f.height for f in pending) >= _BATCH_ROWS:
                yield self._finish(pending)
                pending = []
        if pending:
            yield self._finish(pending)

    def _finish(self, frames: list[pl.DataFrame]) -> pl.DataFrame:
        frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        if self.carried is not None:
            frame = self.carried.attach(frame)
        if self.transform is not None:
            frame = self.transform(frame)
        return _conform(frame, self.schema)


def _part_runs(parts: list[Path]) -> set[str]:
    """The run ids that wrote ``parts`` (from names like ``part-<run id>-000001.parquet``)."""
    return {part.name.removeprefix("part-").rsplit("-", 1)[0] for part in parts}


def _keep_masks(sources: list[Path]) -> dict[int, pl.Series]:
    """Per source with duplicates to drop, a boolean mask of the rows to keep.

    Keys seen more than once are found from a sorted hash of every key (8
    bytes a row, where the keys as strings cost over 40); only their rows
    are read to decide which one wins.
    """
    twice = _repeated_hashes(sources)
    if twice.len() == 0:
        return {}
    candidates = pl.concat(
        [
            pl.scan_parquet(path)
            .select("request_key", "status", "finished_at")
            .with_row_index("__row")
            .with_columns(pl.lit(index, pl.Int32).alias("__src"))
            .filter(_key_hash().is_in(twice.implode()))
            for index, path in enumerate(sources)
        ]
    ).collect()
    winners = (
        candidates.with_columns((pl.col("status") == "ok").alias("__ok"))
        .sort(["__ok", "finished_at", "__src", "__row"], nulls_last=False)
        .unique(subset="request_key", keep="last")
        .select("__src", "__row")
    )
    losers = candidates.select("__src", "__row").join(winners, on=["__src", "__row"], how="anti")
    masks = {}
    for index, path in enumerate(sources):
        dropped = losers.filter(pl.col("__src") == index).get_column("__row")
        if dropped.len():
            height = int(pl.scan_parquet(path).select(pl.len()).collect().item())
            rows = pl.int_range(height, dtype=pl.UInt32, eager=True)
            masks[index] = ~rows.is_in(dropped.cast(pl.UInt32).implode())
    return masks


def _repeated_hashes(sources: list[Path]) -> pl.Series:
    """The hashes of the request keys that occur more than once (or collide) in ``sources``."""
    hashes = (
        pl.concat([pl.scan_parquet(path).select(_key_hash().alias("h")) for path in sources])
        .collect(engine="streaming")
        .get_column("h")
        .sort()
    )
    return hashes.filter(hashes == hashes.shift()).unique()


def _key_hash() -> pl.Expr:
    return pl.col("request_key").hash(seed=0)


def _target_schema(
    sources: list[Path], carried: dict[str, pl.DataType] | None
) -> dict[str, pl.DataType]:
    """The union of the columns of every source and the carried columns, in output order."""
    merged: dict[str, pl.DataType] = dict(RESULT_SCHEMA)
    for path in sources:
        for name, dtype in pl.read_parquet_schema(path).items():
            merged.setdefault(name, dtype)
    if carried is not None:
        for name, dtype in carried.items():
            merged.setdefault(name, dtype)
    return {name: merged[name] for name in _column_order(list(merged))}


class Carried(Protocol):
    """Where the carried columns come from: the prompt set, found by prompt id."""

    @property
    def schema(self) -> dict[str, pl.DataType]:
        """The prompt set's columns (``prompt_id`` among them), as it names them."""

    def rows(self, ids: pl.Series) -> pl.DataFrame:
        """The columns of each prompt id, in order; nulls for an id the set lacks."""


class _Frame:
    """A prompt set held whole, as ``Carried``."""

    def __init__(self, prompts: pl.DataFrame) -> None:
        self.frame = prompts

    @property
    def schema(self) -> dict[str, pl.DataType]:
        """The prompt set's columns."""
        return dict(self.frame.schema)

    def rows(self, ids: pl.Series) -> pl.DataFrame:
        """The rows of ``ids``, nulls for unknown ids."""
        return self.frame.select(pl.all().gather(find_rows(self.frame.get_column(PROMPT_ID), ids)))


class _Attach:
    """The carried input columns put on result rows, clashing names prefixed."""

    def __init__(self, carried: pl.DataFrame | Carried) -> None:
        self.carried = _Frame(carried) if isinstance(carried, pl.DataFrame) else carried
        schema = self.carried.schema
        self.renames = {
            name: INPUT_PREFIX + name
            for name in schema
            if name != PROMPT_ID and name in RESULT_SCHEMA
        }
        self.schema = {self.renames.get(name, name): dtype for name, dtype in schema.items()}

    def attach(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with the carried columns of each row's prompt (null if unknown)."""
        present = [c for c in self.schema if c != PROMPT_ID and c not in frame.columns]
        if not present:
            return frame
        found = self.carried.rows(frame.get_column(PROMPT_ID))
        return frame.hstack(found.rename(self.renames).select(present))


def _conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """``frame`` with exactly ``schema``'s columns, in order and type (missing ones null)."""
    return frame.select(
        (
            pl.col(name).cast(dtype, strict=False)
            if name in frame.columns
            else pl.lit(None, dtype=dtype)
        ).alias(name)
        for name, dtype in schema.items()
    )


def _column_order(columns: list[str]) -> list[str]:
    """Result head, carried input columns, result tail, then scores (``score_*``)."""
    head = ["run_id", "job", PROMPT_ID, "model", "model_id", "sample", "request_key"]
    result_tail = [c for c in RESULT_SCHEMA if c not in head]
    extra = [c for c in dict.fromkeys(columns) if c not in RESULT_SCHEMA and not c.startswith("__")]
    carried = [c for c in extra if not c.startswith(SCORE_PREFIX)]
    scores = sorted(c for c in extra if c.startswith(SCORE_PREFIX))  # the same every run
    return [*head, *carried, *result_tail, *scores]


def current_ok(output: Path, prompts: pl.DataFrame | Carried | None) -> pl.DataFrame:
    """The ok rows the output holds once compacted, one per request key, carried columns on.

    Read from the output and its parts as they stand, without compacting.
    """
    sources = ([output] if output.exists() else []) + part_files(output)
    if not sources:
        return pl.DataFrame(schema=RESULT_SCHEMA)
    frames = [_result_columns(path).filter(pl.col("status") == "ok") for path in sources]
    rows = (
        pl.concat(frames, how="vertical_relaxed")
        .unique(subset="request_key", keep="last", maintain_order=True)
        .collect()
    )
    return _Attach(prompts).attach(rows) if prompts is not None else rows


def _result_columns(path: Path) -> pl.LazyFrame:
    """The result columns of a file; those it predates (added in a later version) are null."""
    present = pl.read_parquet_schema(path)
    return pl.scan_parquet(path).select(
        pl.col(name) if name in present else pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in RESULT_SCHEMA.items()
    )


def set_aside(output: Path, prompts: pl.DataFrame | Carried) -> Path | None:
    """For ``--fresh``: fold any parts into the output and move it aside; its new name.

    Run after ``batchrun.heal.recover``, so every file it reads is whole.
    """
    if not output.exists() and not part_files(output):
        return None
    compact(output, prompts)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = output.with_name(f"{output.stem}.before-{stamp}{output.suffix}")
    output.replace(kept)
    return kept
