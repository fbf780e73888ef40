"""The results: one schema, append-only Parquet parts, compaction, resume.

``ResultSink`` buffers finished requests and writes them as Parquet parts
beside the output (every ``flush_every`` results or ``flush_seconds``),
each to a temporary name then renamed into place, so a crash loses at most
one flush window. ``compact`` folds the parts and any earlier output into
``output.path`` (one row per request key, the best row kept) and replaces it
atomically. ``done_keys`` tells a rerun what it need not send again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from batchrun.dataset import PROMPT_ID
from batchrun.keyset import KeySet
from batchrun.record import RESULT_SCHEMA as RESULT_SCHEMA  # moved: the record owns it
from batchrun.record import Result as Result  # moved: the record owns it

_TIME_COLUMNS = ("started_at", "finished_at")
# Carried columns from the prompt set that would clash with a result column get this prefix.
INPUT_PREFIX = "input_"
# Score and judging columns (``score_<name>``, ``judge_cost_usd``) come last in the output.
SCORE_PREFIX = ("score_", "judge_")
# A failed row of these types is final: a plain rerun does not send it again.
PERMANENT_ERRORS = frozenset({"bad_request"})


def new_run_id() -> str:
    """A sortable, unique id for one run: UTC time and a random suffix."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def parts_dir(output: Path) -> Path:
    """The folder that holds the output's uncompacted parts."""
    return output.parent / f".{output.name}.parts"


def results_frame(results: list[Result], run_id: str, job: str) -> pl.DataFrame:
    """Results as a frame with the fixed schema."""
    count = len(results)
    columns = list(zip(*results, strict=True)) if results else [() for _ in Result._fields]
    data: dict[str, pl.Series] = {
        "run_id": pl.Series("run_id", [run_id] * count, dtype=pl.String),
        "job": pl.Series("job", [job] * count, dtype=pl.String),
    }
    for name, values in zip(Result._fields, columns, strict=True):
        dtype = RESULT_SCHEMA[name]
        if name in _TIME_COLUMNS:
            micros = pl.Series(name, values, dtype=pl.Float64) * 1_000_000
            data[name] = micros.cast(pl.Int64).cast(dtype)
        else:
            data[name] = pl.Series(name, values, dtype=dtype, strict=False)
    return pl.DataFrame(data).select(list(RESULT_SCHEMA))


class ResultSink:
    """Buffers results and writes them as atomic Parquet parts."""

    def __init__(
        self,
        output: Path,
        run_id: str,
        job: str,
        *,
        flush_every: int = 5000,
        flush_seconds: float = 10.0,
    ) -> None:
        self.output = output
        self.run_id = run_id
        self.job = job
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._buffer: list[Result] = []
        self._last_flush = time.monotonic()
        self._sequence = 0

    def add(self, result: Result) -> None:
        """Keep a result; write a part when the buffer is full or old enough."""
        self._buffer.append(result)
        if len(self._buffer) >= self.flush_every or self.due():
            self.flush()

    def due(self) -> bool:
        """Whether buffered results have waited a whole flush interval."""
        return bool(self._buffer) and time.monotonic() - self._last_flush >= self.flush_seconds

    def flush(self) -> None:
        """Write every buffered result as one part (temporary name, then rename)."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        frame = results_frame(self._buffer, self.run_id, self.job)
        folder = parts_dir(self.output)
        if self._sequence == 0:
            folder.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        final = folder / f"part-{self.run_id}-{self._sequence:06d}.parquet"
        write_parquet_atomic(frame, final, statistics=False)
        self._buffer.clear()


def write_parquet_atomic(frame: pl.DataFrame, path: Path, *, statistics: bool = True) -> None:
    """Write ``frame`` to a temporary name, sync it, rename it into place.

    A failed write raises ``OSError`` (never Polars' ``ComputeError``) and
    leaves ``path`` as it was.
    """
    _replace_atomic(
        lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=statistics), path
    )


def _replace_atomic(write: Callable[[Path], None], path: Path) -> None:
    """Call ``write`` on a temporary name beside ``path``, sync, then rename into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            write(tmp)
        except pl.exceptions.PolarsError as exc:
            raise _os_error(exc, tmp) from None
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _os_error(exc: pl.exceptions.PolarsError, path: Path) -> OSError:
    """The ``OSError`` behind a failed Polars write (Polars reports it as a ``ComputeError``).

    Writing batchrun's own fixed-schema frames fails only when the file
    system does; the OS error number is taken from Polars' message when it
    gives one.
    """
    match = _OS_ERROR.search(str(exc))
    if match is not None:
        code = int(match.group(1))
        return OSError(code, os.strerror(code), str(path))
    return OSError(errno.EIO, f"the write failed ({exc})", str(path))


def part_files(output: Path) -> list[Path]:
    """The output's part files, oldest first."""
    folder = parts_dir(output)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("part-*.parquet"))


def done_keys(output: Path, *, retry_errors: bool = False) -> KeySet:
    """Request keys a rerun need not send: ok rows, and permanent failures unless retried."""
    sources = ([output] if output.exists() else []) + part_files(output)
    if not sources:
        return KeySet(pl.Series([], dtype=pl.String))
    keep = pl.col("status") == "ok"
    if not retry_errors:
        keep = keep | pl.col("error_type").is_in(list(PERMANENT_ERRORS))
    frame = pl.concat(
        [pl.scan_parquet(src).select("request_key", "status", "error_type") for src in sources]
    )
    return KeySet(frame.filter(keep).select("request_key").collect().to_series())


_BATCH_ROWS = 20_000


Transform = Callable[[pl.DataFrame], pl.DataFrame]


def compact(output: Path, prompts: pl.DataFrame | None, transform: Transform | None = None) -> int:
    """Fold parts and the earlier output into ``output``: one row per request key.

    Part rows get the carried input columns of their prompt from ``prompts``.
    Per key the ok row wins, then the latest. ``transform`` (scores) is
    applied to every batch on the same pass, so the output is written once.
    Rows stream batch by batch into a temporary file that then replaces the
    output atomically, so memory holds the keys and one batch, not the
    results. The parts are removed after that. Returns the rows written.
    """
    parts = part_files(output)
    if not parts and output.exists() and transform is None:
        return pl.scan_parquet(output).select(pl.len()).collect().item()  # type: ignore[no-any-return]
    sources = ([output] if output.exists() else []) + parts
    carried = _Carried(prompts) if prompts is not None else None
    schema = _target_schema(sources, carried.frame if carried is not None else None)
    if transform is not None:
        # The columns a transform adds (score_<name>) take their place in the output.
        added = {**transform(pl.DataFrame(schema=schema)).schema, **schema}
        schema = {name: added[name] for name in _column_order(list(added))}
    # One run's parts into an empty output cannot hold a key twice: skip the key table.
    masks = {} if not output.exists() and len(_part_runs(parts)) <= 1 else _keep_masks(sources)
    written = 0

    def batches() -> Iterator[pl.DataFrame]:
        pending: list[pl.DataFrame] = []
        for index, path in enumerate(sources):
            mask = masks.get(index)
            if path == output:
                # The earlier output can be large: read it a batch at a time.
                offset = 0
                for frame in pl.scan_parquet(path).collect_batches(chunk_size=_BATCH_ROWS):
                    height = frame.height
                    if mask is not None:
                        frame = frame.filter(mask.slice(offset, height))
                    offset += height
                    yield _conform(transform(frame) if transform else frame, schema)
                continue
            # Parts are small (one flush each): gather them into batches of about
            # _BATCH_ROWS, so the per-batch work is done once per batch, not per part.
            frame = pl.read_parquet(path)
            pending.append(frame.filter(mask) if mask is not None else frame)
            if sum(f.height for f in pending) >= _BATCH_ROWS:
                yield finish(pending)
                pending = []
        if pending:
            yield finish(pending)

    def finish(frames: list[pl.DataFrame]) -> pl.DataFrame:
        frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        if carried is not None:
            frame = carried.attach(frame)
        if transform is not None:
            frame = transform(frame)
        return _conform(frame, schema)

    def source(*_: object) -> Iterator[pl.DataFrame]:
        nonlocal written
        for frame in batches():
            written += frame.height
            yield frame

    def write(tmp: Path) -> None:
        # Polars pulls the batches one at a time and streams them into the file.
        register_io_source(source, schema=schema).sink_parquet(tmp, compression="zstd")

    output.parent.mkdir(parents=True, exist_ok=True)
    _replace_atomic(write, output)
    for part in parts:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    with contextlib.suppress(OSError):
        parts_dir(output).rmdir()
    return written


def _part_runs(parts: list[Path]) -> set[str]:
    """The run ids that wrote ``parts`` (from names like ``part-<run id>-000001.parquet``)."""
    return {part.name.removeprefix("part-").rsplit("-", 1)[0] for part in parts}


def _keep_masks(sources: list[Path]) -> dict[int, pl.Series]:
    """Per source with duplicates to drop, a boolean mask of the rows to keep."""
    if not sources:
        return {}
    keys = pl.concat(
        [
            pl.scan_parquet(path)
            .select("request_key", "status", "finished_at")
            .with_row_index("__row")
            .with_columns(pl.lit(index, pl.Int32).alias("__src"))
            for index, path in enumerate(sources)
        ]
    ).collect()
    if not keys.get_column("request_key").is_duplicated().any():
        return {}
    winners = (
        keys.with_columns((pl.col("status") == "ok").alias("__ok"))
        .sort(["__ok", "finished_at", "__src", "__row"], nulls_last=False)
        .unique(subset="request_key", keep="last")
        .select("__src", "__row")
    )
    masks = {}
    for index in range(len(sources)):
        mine = keys.filter(pl.col("__src") == index).select("__row")
        keep = winners.filter(pl.col("__src") == index).get_column("__row")
        mask = mine.get_column("__row").is_in(keep.implode())
        if not mask.all():
            masks[index] = mask
    return masks


def _target_schema(sources: list[Path], carried: pl.DataFrame | None) -> dict[str, pl.DataType]:
    """The union of the columns of every source and the carried columns, in output order."""
    merged: dict[str, pl.DataType] = dict(RESULT_SCHEMA)
    for path in sources:
        for name, dtype in pl.read_parquet_schema(path).items():
            merged.setdefault(name, dtype)
    if carried is not None:
        for name, dtype in carried.schema.items():
            merged.setdefault(name, dtype)
    return {name: merged[name] for name in _column_order(list(merged))}


class _Carried:
    """The carried input columns, found by prompt id with a binary search (no copy)."""

    def __init__(self, prompts: pl.DataFrame) -> None:
        self.frame = _carried(prompts)
        ids = self.frame.get_column(PROMPT_ID)
        self.order = ids.arg_sort()
        self.sorted_ids = ids.gather(self.order)

    def attach(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with the carried columns of each row's prompt (null if unknown)."""
        present = [c for c in self.frame.columns if c != PROMPT_ID and c not in frame.columns]
        if not present or self.frame.height == 0:
            return frame
        wanted = frame.get_column(PROMPT_ID)
        position = self.sorted_ids.search_sorted(wanted, side="left")
        rows = self.order.gather(position.clip(0, self.frame.height - 1))
        found = self.frame.select(PROMPT_ID, *present)[rows]
        matched = found.get_column(PROMPT_ID) == wanted
        extra = found.with_columns(matched.alias("__matched")).select(
            pl.when(pl.col("__matched")).then(pl.col(c)).otherwise(None).alias(c) for c in present
        )
        return frame.hstack(extra)


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


def _carried(prompts: pl.DataFrame) -> pl.DataFrame:
    """The prompt set's columns as carried into results, clashing names prefixed."""
    renames = {
        name: INPUT_PREFIX + name
        for name in prompts.columns
        if name != PROMPT_ID and name in RESULT_SCHEMA
    }
    return prompts.rename(renames)


def _column_order(columns: list[str]) -> list[str]:
    """Result head, carried input columns, result tail, then scores (``score_*``)."""
    head = ["run_id", "job", PROMPT_ID, "model", "model_id", "sample", "request_key"]
    result_tail = [c for c in RESULT_SCHEMA if c not in head]
    extra = [c for c in dict.fromkeys(columns) if c not in RESULT_SCHEMA and not c.startswith("__")]
    carried = [c for c in extra if not c.startswith(SCORE_PREFIX)]
    scores = sorted(c for c in extra if c.startswith(SCORE_PREFIX))  # the same every run
    return [*head, *carried, *result_tail, *scores]


def failure_counts(output: Path) -> tuple[int, int, int]:
    """Rows in ``output``, failed rows, and failed rows a plain rerun does not send again."""
    if not output.exists():
        return 0, 0, 0
    counts = (
        pl.scan_parquet(output)
        .select(
            pl.len().alias("rows"),
            (pl.col("status") != "ok").sum().alias("failed"),
            ((pl.col("status") != "ok") & pl.col("error_type").is_in(list(PERMANENT_ERRORS)))
            .sum()
            .alias("permanent"),
        )
        .collect()
        .row(0)
    )
    return int(counts[0]), int(counts[1]), int(counts[2])


def current_ok(output: Path, prompts: pl.DataFrame | None) -> pl.DataFrame:
    """The ok rows the output holds once compacted, one per request key, carried columns on.

    Read from the output and its parts as they stand, without compacting.
    """
    sources = ([output] if output.exists() else []) + part_files(output)
    if not sources:
        return pl.DataFrame(schema=RESULT_SCHEMA)
    frames = [
        pl.scan_parquet(path).select(list(RESULT_SCHEMA)).filter(pl.col("status") == "ok")
        for path in sources
    ]
    rows = (
        pl.concat(frames, how="vertical_relaxed")
        .unique(subset="request_key", keep="last", maintain_order=True)
        .collect()
    )
    return _Carried(prompts).attach(rows) if prompts is not None else rows
