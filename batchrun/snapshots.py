"""Reading results files for ``compare`` and ``report``: which rows count, which files are one run.

``load_snapshots`` promises, for the files given (oldest first):

* only current rows: a row whose boolean ``superseded`` column is true is
  never counted, and of the rows left one per (prompt, model, sample), the
  latest ``finished_at`` (with one warning line naming the file and how many
  rows were dropped);
* shards of one run read as one run: consecutive files that share their
  ``run_id``, or that ``--shard I/N`` wrote for one output (``…shard-0-of-4…``,
  ``…shard-1-of-4…``), become one snapshot;
* no silent mix of jobs: two consecutive runs of different jobs or prompt
  sets are a ``JobError`` naming both files, unless ``allow_different``;
* the judge's share: per row, ``judge_requests`` and ``judge_cost_usd``, from
  those columns when the results carry them, else from the sibling judge
  files ``<stem>.judge-<name>.parquet`` joined on the main row's request key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import polars as pl

from batchrun.dataset import PROMPT_ID
from batchrun.errors import JobError

ROW_KEY = (PROMPT_ID, "model", "sample")
JUDGE_COST = "judge_cost_usd"
JUDGE_REQUESTS = "judge_requests"
SUPERSEDED = "superseded"
_SHARD = re.compile(r"(?:shard-)?(\d+)-of-(\d+)")


@dataclass
class Snapshot:
    """One run of a job: its current rows, read from one file or from the shards of one run."""

    label: str
    frame: pl.DataFrame
    paths: list[Path] = field(default_factory=list)
    lower_is_better: frozenset[str] = frozenset()  # scores better when lower (WER)

    @property
    def finished(self) -> datetime | None:
        """When the run's last row finished (None when the file has no times)."""
        if "finished_at" not in self.frame.columns:
            return None
        value = self.frame.get_column("finished_at").max()
        return value if isinstance(value, datetime) else None

    @property
    def files(self) -> str:
        """The file names this snapshot was read from, for messages."""
        return "+".join(p.name for p in self.paths)


def load_snapshots(
    paths: list[Path], *, allow_different: bool = False
) -> tuple[list[Snapshot], list[str]]:
    """The runs in ``paths`` (oldest first) and the warnings to show; ``JobError`` for a
    missing or foreign file, or for runs of different jobs or prompt sets."""
    warnings: list[str] = []
    read: list[Snapshot] = []
    for path in paths:
        frame = _read(path)
        frame = _with_judge(frame, path)
        read.append(Snapshot(path.stem, frame, [path], _lower_is_better(path)))
    snapshots = []
    for group in _runs(read):
        snapshot = group[0] if len(group) == 1 else _merged(group)
        snapshot.frame, warning = current_rows(snapshot.frame, snapshot.files)
        if warning:
            warnings.append(warning)
        snapshots.append(snapshot)
    if not allow_different:
        for before, after in pairwise(snapshots):
            check_same_job(before, after)
    return snapshots, warnings


def _lower_is_better(path: Path) -> frozenset[str]:
    """The scores a results file says are better when lower (its key-value metadata)."""
    from batchrun.finishing import LOWER_IS_BETTER_KEY

    try:
        names = json.loads(pl.read_parquet_metadata(path).get(LOWER_IS_BETTER_KEY, "[]"))
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return frozenset()
    return frozenset(str(n) for n in names) if isinstance(names, list) else frozenset()


def _read(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise JobError(f"{path}: cannot read results ({str(exc).splitlines()[0]})") from None
    missing = {"model", "status", PROMPT_ID, "sample"} - set(frame.columns)
    if missing:
        raise JobError(f"{path}: not a batchrun results file (no {sorted(missing)[0]} column)")
    return frame


def current_rows(frame: pl.DataFrame, name: str) -> tuple[pl.DataFrame, str | None]:
    """The rows that count: not superseded, and the latest of each (prompt, model, sample);
    with a warning line when repeated rows were dropped."""
    if SUPERSEDED in frame.columns:
        frame = frame.filter(pl.col(SUPERSEDED).fill_null(False).not_())
    unique = frame.select(ROW_KEY).n_unique()
    if unique == frame.height:
        return frame, None
    if "finished_at" in frame.columns:
        frame = frame.sort("finished_at", nulls_last=False, maintain_order=True)
    kept = frame.unique(subset=list(ROW_KEY), keep="last", maintain_order=True)
    dropped = frame.height - kept.height
    warning = (
        f"{name}: {dropped:,} rows repeat a (prompt, model, sample) already there; "
        "counted only the latest finished of each"
    )
    return kept, warning


def _shard_key(path: Path) -> tuple[str, str] | None:
    """(the name without its shard number, the shard count) for a ``--shard`` output."""
    match = _SHARD.search(path.name)
    if match is None:
        return None
    return (path.name[: match.start()] + "*" + path.name[match.end() :], match.group(2))


def _run_ids(snapshot: Snapshot) -> frozenset[str]:
    if "run_id" not in snapshot.frame.columns:
        return frozenset()
    return frozenset(snapshot.frame.get_column("run_id").drop_nulls().unique().to_list())


def _same_run(a: Snapshot, b: Snapshot) -> bool:
    key_a, key_b = _shard_key(a.paths[0]), _shard_key(b.paths[0])
    if key_a is not None and key_a == key_b:
        return True
    ids = _run_ids(a)
    return bool(ids) and ids == _run_ids(b)


def _runs(read: list[Snapshot]) -> list[list[Snapshot]]:
    """Consecutive files of one run grouped together."""
    groups: list[list[Snapshot]] = []
    for snapshot in read:
        if groups and _same_run(groups[-1][0], snapshot):
            groups[-1].append(snapshot)
        else:
            groups.append([snapshot])
    return groups


def _merged(group: list[Snapshot]) -> Snapshot:
    first = group[0].paths[0]
    key = _shard_key(first)
    label = _SHARD.sub(f"shards-of-{key[1]}", first.stem) if key else first.stem
    frame = pl.concat([s.frame for s in group], how="diagonal_relaxed")
    lower = frozenset().union(*(s.lower_is_better for s in group))
    return Snapshot(label, frame, [p for s in group for p in s.paths], lower)


def check_same_job(before: Snapshot, after: Snapshot) -> None:
    """``JobError`` unless the two runs are of one job, on one prompt set."""
    jobs = [_jobs(before), _jobs(after)]
    what = None
    if jobs[0] and jobs[1] and jobs[0] != jobs[1]:
        what = f"job {' '.join(sorted(jobs[0]))} vs {' '.join(sorted(jobs[1]))}"
    else:
        old, new = _prompts(before), _prompts(after)
        if old != new:
            only = len(old ^ new)
            what = (
                f"prompt sets differ ({len(old):,} vs {len(new):,} prompts, {only:,} in only one)"
            )
    if what is not None:
        raise JobError(
            f"{before.files} and {after.files} are not runs of one job: {what}; "
            "pass --allow-different to compare them anyway"
        )


def _jobs(snapshot: Snapshot) -> set[str]:
    if "job" not in snapshot.frame.columns:
        return set()
    return set(snapshot.frame.get_column("job").drop_nulls().unique().to_list())


def _prompts(snapshot: Snapshot) -> set[str]:
    return set(snapshot.frame.get_column(PROMPT_ID).unique().to_list())


def judge_files(path: Path) -> list[Path]:
    """The judge outputs written beside the results file ``path`` (see ``judge.judge_output``)."""
    return sorted(path.parent.glob(f"{glob_escape(path.stem)}.judge-*{path.suffix}"))


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters taken literally."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _with_judge(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    """The results with ``judge_requests`` and ``judge_cost_usd`` per row, when known."""
    if JUDGE_COST in frame.columns:
        if JUDGE_REQUESTS not in frame.columns:
            counted = pl.col(JUDGE_COST).is_not_null().cast(pl.Int64)
            frame = frame.with_columns(counted.alias(JUDGE_REQUESTS))
        return frame
    files = judge_files(path)
    if not files or "request_key" not in frame.columns:
        return frame
    judged = []
    for file in files:
        rows = current_rows(_read(file), file.name)[0]
        cost = rows.get_column("cost_usd") if "cost_usd" in rows.columns else None
        judged.append(
            rows.select(
                pl.col(PROMPT_ID).alias("request_key"),
                (cost if cost is not None else pl.lit(None, pl.Float64)).alias(JUDGE_COST),
            )
        )
    per_row = (
        pl.concat(judged)
        .group_by("request_key")
        .agg(
            pl.len().cast(pl.Int64).alias(JUDGE_REQUESTS),
            pl.when(pl.col(JUDGE_COST).is_not_null().any())
            .then(pl.col(JUDGE_COST).sum())
            .alias(JUDGE_COST),
        )
    )
    return frame.join(per_row, on="request_key", how="left")
