"""Reading the prompt set: Parquet, CSV, a glob or a folder of either, into Polars.

``read_dataset`` promises a non-empty DataFrame with a unique, non-null
string column ``PROMPT_ID`` first, or a ``JobError`` naming the file and
what is wrong with it. Files of a folder or glob must share their columns
unless the job sets ``input.union: true``. ``find_rows`` finds rows of a
prompt set by their ids.
"""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import polars as pl

from batchrun.config import InputSpec
from batchrun.errors import JobError
from batchrun.objstore import is_remote

PROMPT_ID = "prompt_id"
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def read_dataset(spec: InputSpec, base_dir: Path | None = None) -> pl.DataFrame:
    """Read every file the input names, add the prompt id column, apply ``limit``."""
    if is_remote(spec.path):
        frame = _read_remote(spec)
    else:
        files = _resolve_files(spec, base_dir or Path.cwd())
        frames = [_read_one(path, spec.format) for path in files]
        if not spec.union:
            _check_same_columns(files, frames)
        frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    if frame.height == 0:
        raise JobError(f"input.path: {spec.path} has no rows; give a file with at least one prompt")
    if spec.limit is not None:
        frame = frame.head(spec.limit)
    return _with_prompt_id(frame, spec)


def _check_same_columns(files: list[Path], frames: list[pl.DataFrame]) -> None:
    """``JobError`` naming two files whose columns differ, unless the job unions them."""
    first = set(frames[0].columns)
    for path, frame in zip(files[1:], frames[1:], strict=True):
        columns = set(frame.columns)
        if columns != first:
            differing = sorted(first ^ columns)
            raise JobError(
                f"{files[0].name} and {path.name} have different columns "
                f"({', '.join(differing[:5])}); make them match, or set input.union: true "
                "to combine them (missing cells are empty)",
                field="input.path",
            )


def _resolve_files(spec: InputSpec, base_dir: Path) -> list[Path]:
    raw = spec.path
    path = Path(raw) if Path(raw).is_absolute() else base_dir / raw
    if any(ch in raw for ch in "*?["):
        found = glob.glob(str(path), recursive=True)  # noqa: PTH207
        matches = sorted(Path(p) for p in found)
        files = [p for p in matches if p.is_file() and _kind(p, spec.format)]
        if not files:
            raise JobError(f"input.path: no Parquet or CSV file matches {raw}")
        return files
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _kind(p, spec.format))
        if not files:
            raise JobError(f"input.path: the folder {raw} holds no .parquet or .csv file")
        return files
    if not path.exists():
        raise JobError(
            f"{raw} does not exist; check the path (a relative path is read from the "
            "job file's folder)",
            field="input.path",
        )
    if _kind(path, spec.format) is None:
        raise JobError(
            f"input.path: {raw} is neither .parquet nor .csv; rename it or set input.format"
        )
    return [path]


def _read_remote(spec: InputSpec) -> pl.DataFrame:
    """An object-storage input (a file, a folder or a glob), read by Polars's object store."""
    suffix = PurePosixPath(urlsplit(spec.path).path).suffix.lower()
    kind = spec.format or _SUFFIXES.get(suffix, "parquet")
    try:
        if kind == "csv":
            return pl.read_csv(spec.path, infer_schema_length=10_000)
        return pl.read_parquet(spec.path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise JobError(f"{spec.path}: {_reason(kind, exc)}", field="input.path") from None


def _kind(path: Path, forced: str | None) -> str | None:
    return forced or _SUFFIXES.get(path.suffix.lower())


def _read_one(path: Path, forced: str | None) -> pl.DataFrame:
    kind = _kind(path, forced)
    try:
        if kind == "parquet":
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema_length=10_000)
    except PermissionError:
        raise JobError(f"input.path: {path}: permission denied") from None
    except (pl.exceptions.ComputeError, OSError, pl.exceptions.PolarsError) as exc:
        raise JobError(f"input.path: {path}: {_reason(kind, exc)}") from None


def _reason(kind: str | None, exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = text.lower()
    if kind == "parquet":
        return f"not a readable Parquet file ({text[:160]})"
    if "utf-8" in lowered or "utf8" in lowered or "invalid utf" in lowered:
        return "not UTF-8 text; re-save the CSV as UTF-8"
    if "found more fields" in lowered or ("expected" in lowered and "fields" in lowered):
        return f"rows have differing numbers of fields ({text[:160]}); fix the CSV"
    if "empty" in lowered:
        return "the CSV is empty; give a header line and at least one row"
    return f"cannot read the CSV ({text[:160]})"


def _with_prompt_id(frame: pl.DataFrame, spec: InputSpec) -> pl.DataFrame:
    column = spec.id_column
    if column is not None:
        if column not in frame.columns:
            raise JobError(
                f"input.id_column: column {column!r} is not in {spec.path} "
                f"(columns: {', '.join(frame.columns)})"
            )
        ids = frame.get_column(column)
        nulls = ids.null_count()
        if nulls:
            first = ids.is_null().arg_true()[0]
            raise JobError(
                f"input.id_column: column {column!r} has {nulls} empty value(s), the first in "
                f"data row {first + 1}; give every row an id"
            )
        ids = ids.cast(pl.String)
        repeated = _repeated(ids)
        if repeated is not None:
            raise JobError(
                f"input.id_column: column {column!r} repeats the id {repeated!r}; "
                "ids must be unique"
            )
    else:
        ids = pl.Series(PROMPT_ID, _row_hashes(frame), dtype=pl.String)
    frame = frame.drop(PROMPT_ID) if PROMPT_ID in frame.columns else frame
    return frame.insert_column(0, ids.alias(PROMPT_ID))


def _repeated(ids: pl.Series) -> str | None:
    """The first id (in row order) that some other row repeats, or None.

    Sorted hashes are compared with their neighbours, and only ids whose
    hash repeats are compared as text: a hash table of every id would cost
    several times the column's own memory.
    """
    hashes = ids.hash(seed=0)
    ordered = hashes.sort()
    twice = ordered.filter(ordered == ordered.shift())
    if twice.len() == 0:
        return None
    suspects = ids.filter(hashes.is_in(twice.implode()))
    repeated = suspects.filter(suspects.is_duplicated())
    return str(repeated[0]) if repeated.len() else None


def _row_hashes(frame: pl.DataFrame) -> list[str]:
    """A stable id per row from its content; repeated rows get a ``-N`` suffix."""
    seen: dict[str, int] = {}
    out: list[str] = []
    columns = sorted(frame.columns)
    for row in frame.select(columns).iter_rows():
        digest = hashlib.sha256(
            json.dumps(row, default=str, ensure_ascii=False).encode()
        ).hexdigest()[:16]
        count = seen.get(digest, 0)
        seen[digest] = count + 1
        out.append(digest if count == 0 else f"{digest}-{count}")
    return out


def find_rows(ids: pl.Series, wanted: pl.Series) -> pl.Series:
    """The row of each wanted prompt id among ``ids`` (unique), in order; null where none.

    Only ``wanted`` (a batch) is hashed, never every id: finding a batch's
    prompts costs the batch's memory, however long the prompt set.
    """
    rows = ids.is_in(wanted.implode()).arg_true()
    found = pl.DataFrame({"id": ids.gather(rows), "row": rows})
    asked = pl.DataFrame({"id": wanted.cast(pl.String)})
    return asked.join(found, on="id", how="left", maintain_order="left").get_column("row")
