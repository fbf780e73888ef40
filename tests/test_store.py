"""Compaction: one row per key, the ok row wins, carried columns attached, atomic output."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from batchrun.compaction import compact
from batchrun.dataset import PROMPT_ID
from batchrun.sink import ResultSink
from batchrun.store import RESULT_SCHEMA, Result, done_keys, part_files


def result(key: str, status: str, prompt_id: str = "p1", finished: float | None = None) -> Result:
    now = finished if finished is not None else time.time()
    return Result(
        prompt_id=prompt_id,
        model="m",
        model_id="m",
        sample=0,
        request_key=key,
        status=status,
        attempts=1,
        started_at=now,
        finished_at=now,
        response="ok" if status == "ok" else None,
        error_type=None if status == "ok" else "server_error",
    )


def test_ok_row_wins_over_earlier_error(tmp_path: Path) -> None:
    """An error in the output, then an ok row in a later run's part: only the ok row stays."""
    output = tmp_path / "r.parquet"
    prompts = pl.DataFrame({PROMPT_ID: ["p1", "p2"], "question": ["q1", "q2"]})
    first = ResultSink(output, "run-a", "job")
    first.add(result("k1", "error"))
    first.add(result("k2", "ok", "p2"))
    first.flush()
    compact(output, prompts)
    assert done_keys(output) == {"k2"}
    second = ResultSink(output, "run-b", "job")
    second.add(result("k1", "ok"))
    second.flush()
    assert compact(output, prompts) == 2
    frame = pl.read_parquet(output)
    assert sorted(frame["request_key"]) == ["k1", "k2"]
    assert set(frame["status"]) == {"ok"}
    assert frame.filter(pl.col("request_key") == "k1")["run_id"][0] == "run-b"
    assert frame["question"].to_list() == ["q2", "q1"]
    assert not part_files(output)


def test_parts_of_two_runs_latest_ok_kept(tmp_path: Path) -> None:
    """Parts left by a killed run and by its rerun fold into one row per key."""
    output = tmp_path / "r.parquet"
    for run, status, at in (("run-a", "error", 1.0), ("run-b", "ok", 2.0), ("run-c", "error", 3.0)):
        sink = ResultSink(output, run, "job")
        sink.add(result("k1", status, finished=at))
        sink.flush()
    compact(output, None)
    frame = pl.read_parquet(output)
    assert frame.height == 1 and frame["run_id"][0] == "run-b"


def test_empty_output_has_every_column(tmp_path: Path) -> None:
    """With nothing recorded, the output still has the full typed schema."""
    output = tmp_path / "r.parquet"
    compact(output, pl.DataFrame({PROMPT_ID: ["p1"], "question": ["q"]}))
    frame = pl.read_parquet(output)
    assert frame.height == 0
    for name, dtype in RESULT_SCHEMA.items():
        assert frame.schema[name] == dtype
    assert "question" in frame.columns


def test_unknown_prompt_gets_null_carried_columns(tmp_path: Path) -> None:
    """A part row whose prompt left the data set keeps its row, with empty input columns."""
    output = tmp_path / "r.parquet"
    sink = ResultSink(output, "run-a", "job")
    sink.add(result("k1", "ok", "gone"))
    sink.add(result("k2", "ok", "p1"))
    sink.flush()
    compact(output, pl.DataFrame({PROMPT_ID: ["p1"], "question": ["q1"]}))
    frame = pl.read_parquet(output).sort("request_key")
    assert frame["question"].to_list() == [None, "q1"]


def test_snapshot_folds_like_compact_and_leaves_output_and_parts(tmp_path: Path) -> None:
    """A checkpoint's snapshot holds what compaction would write; the output and parts stay."""
    from batchrun.compaction import snapshot

    output = tmp_path / "r.parquet"
    prompts = pl.DataFrame({PROMPT_ID: ["p1", "p2"], "question": ["q1", "q2"]})
    first = ResultSink(output, "run-a", "job")
    first.add(result("k1", "error"))
    first.flush()
    compact(output, prompts)
    earlier = output.read_bytes()
    second = ResultSink(output, "run-b", "job")
    second.add(result("k1", "ok"))
    second.add(result("k2", "ok", "p2"))
    second.flush()
    parts = part_files(output)
    target = tmp_path / ".r.parquet.checkpoint.parquet"
    assert snapshot(output, target, prompts) == 2
    assert output.read_bytes() == earlier and part_files(output) == parts
    compact(output, prompts)
    assert pl.read_parquet(target).equals(pl.read_parquet(output))
