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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import polars as pl

from batchrun.dataset import PROMPT_ID

# Every column batchrun writes besides the carried input columns, with its fixed type.
RESULT_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "job": pl.String(),
    PROMPT_ID: pl.String(),
    "model": pl.String(),
    "model_id": pl.String(),
    "sample": pl.Int32(),
    "request_key": pl.String(),
    "response": pl.String(),
    "reasoning": pl.String(),
    "finish_reason": pl.String(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "total_tokens": pl.Int64(),
    "cached_tokens": pl.Int64(),
    "reasoning_tokens": pl.Int64(),
    "cost_usd": pl.Float64(),
    "latency_s": pl.Float64(),
    "ttft_s": pl.Float64(),
    "time_to_last_token_s": pl.Float64(),
    "output_tokens_per_s": pl.Float64(),
    "started_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"),
    "status": pl.String(),
    "error_type": pl.String(),
    "error_message": pl.String(),
    "http_status": pl.Int32(),
    "attempts": pl.Int32(),
    "response_id": pl.String(),
    "served_model": pl.String(),
    "gateway_request_id": pl.String(),
    "tool_calls": pl.String(),
    "embedding": pl.List(pl.Float32()),
    "parsed": pl.String(),
    "parsed_valid": pl.Boolean(),
}
_TIME_COLUMNS = ("started_at", "finished_at")
# Carried columns from the prompt set that would clash with a result column get this prefix.
INPUT_PREFIX = "input_"
# Score columns (``score_<name>``, ``score_<name>_reason``) come last in the output.
SCORE_PREFIX = "score_"
# A failed row of these types is final: a plain rerun does not send it again.
PERMANENT_ERRORS = frozenset({"bad_request"})
# Rows per Parquet row group: a damaged file keeps the row groups that still read.
ROW_GROUP_ROWS = 20_000


class Result(NamedTuple):
    """One finished request, ok or failed, as it goes into the results.

    A named tuple rather than a dataclass: a run makes one per request, and
    tuples are cheap to build and to turn into columns.
    """

    prompt_id: str
    model: str
    model_id: str
    sample: int
    request_key: str
    status: str
    attempts: int
    started_at: float
    finished_at: float
    response: str | None = None
    reasoning: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: float | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    time_to_last_token_s: float | None = None
    output_tokens_per_s: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    http_status: int | None = None
    response_id: str | None = None
    served_model: str | None = None
    gateway_request_id: str | None = None
    tool_calls: str | None = None
    embedding: list[float] | None = None
    parsed: str | None = None
    parsed_valid: bool | None = None


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


def done_keys(output: Path, *, retry_errors: bool = False) -> set[str]:
    """Request keys a rerun need not send: ok rows, and permanent failures unless retried."""
    sources = ([output] if output.exists() else []) + part_files(output)
    if not sources:
        return set()
    frame = pl.concat(
        [pl.read_parquet(src, columns=["request_key", "status", "error_type"]) for src in sources]
    )
    keep = pl.col("status") == "ok"
    if not retry_errors:
        keep = keep | pl.col("error_type").is_in(list(PERMANENT_ERRORS))
    return set(frame.filter(keep).get_column("request_key").to_list())


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
