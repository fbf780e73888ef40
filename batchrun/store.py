"""The results: one schema, the files that hold them, atomic writes, resume.

A run's results live beside ``output.path``: journal segments and Parquet
parts in the parts folder (``batchrun.sink`` writes them), and the output
itself, which ``batchrun.compaction`` folds them into. This module owns
the schema, where those files are, how a Parquet file is written
atomically (temporary name, fsync, rename), and what a rerun reads:
``done_keys`` (what it need not send again) and ``failure_counts``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from batchrun.keyset import KeySet
from batchrun.record import RESULT_SCHEMA as RESULT_SCHEMA  # moved: the record owns it
from batchrun.record import Result as Result  # moved: the record owns it

_TIME_COLUMNS = ("started_at", "finished_at", "submitted_at")
# Carried columns from the prompt set that would clash with a result column get this prefix.
INPUT_PREFIX = "input_"
# Score and judging columns (``score_<name>``, ``judge_cost_usd``) come last in the output.
SCORE_PREFIX = ("score_", "judge_")
# A failed row of these types is final: a plain rerun does not send it again.
PERMANENT_ERRORS = frozenset({"bad_request"})
# Rows per Parquet row group: a damaged file keeps the row groups that still read.
ROW_GROUP_ROWS = 20_000


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


def write_parquet_atomic(frame: pl.DataFrame, path: Path, *, statistics: bool = True) -> None:
    """Write ``frame`` to a temporary name, sync it, rename it into place.

    A failed write raises ``OSError`` naming ``path`` (never Polars'
    ``ComputeError``) and leaves ``path`` as it was.
    """
    replace_atomic(
        lambda tmp: frame.write_parquet(
            tmp, compression="zstd", statistics=statistics, row_group_size=ROW_GROUP_ROWS
        ),
        path,
    )


def replace_atomic(write: Callable[[Path], None], path: Path) -> None:
    """Write through a temporary name beside ``path``: fsync, rename, fsync the folder.

    Once this returns, ``path`` survives a power loss. A failure raises
    ``OSError`` naming ``path`` and removes the temporary file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            write(tmp)
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:
            raise _os_error(exc, path) from None
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(path)
        sync_folder(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def sync_folder(folder: Path) -> None:
    """fsync a folder, so the names created or renamed in it survive a power loss."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _os_error(exc: pl.exceptions.PolarsError | pl.exceptions.PanicException, path: Path) -> OSError:
    """The ``OSError`` behind a failed Polars write (Polars reports it as a ``ComputeError``).

    Writing batchrun's own fixed-schema frames fails only when the file
    system does; the OS error number is taken from Polars' message when it
    gives one. Some writes hide it ("Invalid thrift: transport error" when
    the footer meets a full disk): then a folder with no room left means
    the disk is full.
    """
    match = _OS_ERROR.search(str(exc))
    if match is not None:
        code = int(match.group(1))
        return OSError(code, os.strerror(code), str(path))
    if _no_room(path.parent):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return OSError(errno.EIO, f"the write failed ({exc})", str(path))


def _no_room(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


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
    return KeySet(frame.filter(keep).select("request_key"))


def failure_counts(output: Path, awaited: Collection[str] = ()) -> tuple[int, int, int]:
    """Rows in ``output``, failed rows, and failed rows a plain rerun does not send again.

    Failed rows whose key is in ``awaited`` (already submitted again, in a
    pending batch) are not counted as failed.
    """
    if not output.exists():
        return 0, 0, 0
    failed = pl.col("status") != "ok"
    if awaited:
        failed = failed & ~pl.col("request_key").is_in(list(awaited))
    counts = (
        pl.scan_parquet(output)
        .select(
            pl.len().alias("rows"),
            failed.sum().alias("failed"),
            (failed & pl.col("error_type").is_in(list(PERMANENT_ERRORS))).sum().alias("permanent"),
        )
        .collect(engine="streaming")  # a batch at a time, not every row's columns at once
        .row(0)
    )
    return int(counts[0]), int(counts[1]), int(counts[2])
