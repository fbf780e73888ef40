"""A slice at a time gives what one pass over everything gives: requests, digests, outputs.

Prompts are rendered and results compacted in slices so that memory stays
flat in the size of a job; these tests force slices of a few rows, so the
many-slice paths run, and compare them with one slice over everything.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from batchrun import compaction, prompt_table
from batchrun.config import Job
from batchrun.dataset import PROMPT_ID
from batchrun.plan import Plan, build_plan
from batchrun.sink import ResultSink
from batchrun.store import Result
from batchrun.templates import compile_prompt

ROWS = 23
# "model" clashes with a result column (carried as input_model); "note" is carried as is.
FRAME = pl.DataFrame(
    {
        PROMPT_ID: [f"p{i:02d}" for i in range(ROWS)],
        "q": [f"question {i}" for i in range(ROWS)],
        "model": [f"m{i % 3}" for i in range(ROWS)],
        "note": [None if i % 4 else f"n{i}" for i in range(ROWS)],
    }
)
PLAIN = "{{ q }}"  # rendered column-wise
JINJA = "{{ q | upper }} ({{ note or 'none' }})"  # rendered row by row


def make_plan(user: str, slice_rows: int | None = None) -> Plan:
    """The plan of a two-model job over FRAME; ``slice_rows`` forces the slice size."""
    job = Job.model_validate(
        {
            "name": "t",
            "provider": "mock",
            "input": {"path": "x.parquet"},
            "prompt": {"system": "Be brief.", "user": user},
            "models": ["a", {"id": "b", "params": {"temperature": 0.5}}],
            "params": {"max_tokens": 8},
            "samples": 2,
            "output": {"path": "o.parquet"},
        }
    )
    if slice_rows is None:
        return build_plan(job, FRAME, compile_prompt(job.prompt))
    saved = prompt_table.SLICE_ROWS
    prompt_table.SLICE_ROWS = slice_rows
    try:
        return build_plan(job, FRAME, compile_prompt(job.prompt))
    finally:
        prompt_table.SLICE_ROWS = saved


def sent(plan: Plan) -> list[tuple[object, ...]]:
    return [
        (r.key, r.row, r.prompt_id, r.model.name, r.sample, r.body, r.estimated_tokens)
        for r in plan.requests()
    ]


@pytest.mark.parametrize("user", [PLAIN, JINJA])
def test_requests_rendered_a_slice_at_a_time_are_those_of_one_pass(user: str) -> None:
    """Slices of 4 rows yield the same requests, in the same order, as one slice of all."""
    whole = make_plan(user)
    sliced = make_plan(user, slice_rows=4)
    assert len(whole.table.starts()) == 1 and len(sliced.table.starts()) == 6
    assert sent(sliced) == sent(whole)
    assert len(sent(whole)) == ROWS * 2 * 2
    assert sliced.table.tokens == whole.table.tokens
    assert sliced.table.digest == whole.table.digest


def test_plan_digest_and_tokens_are_those_of_the_whole_rendered_table() -> None:
    """The digest summed over slices is the hash of the whole rendered table (as before), so
    the plan fingerprint of an output written by an earlier version still matches."""
    plan = make_plan(PLAIN, slice_rows=4)
    messages, _ = compile_prompt(plan.job.prompt).render_columns(FRAME) or (None, None)
    assert messages is not None
    hashed = pl.DataFrame([FRAME.get_column(PROMPT_ID), messages]).hash_rows(seed=0).sum()
    assert plan.table.digest == hashed
    assert plan.table.tokens == int((messages.str.len_chars() // 4 + 1).sum())


def test_a_row_that_cannot_render_in_a_later_slice_is_refused_before_sending() -> None:
    """The check renders every slice: a bad row in the last slice is still a JobError."""
    from batchrun.errors import JobError

    bad = FRAME.with_columns(
        pl.when(pl.col(PROMPT_ID) == "p22").then(pl.lit("")).otherwise(pl.col("q")).alias("q")
    )
    job = make_plan(PLAIN).job
    saved = prompt_table.SLICE_ROWS
    prompt_table.SLICE_ROWS = 4
    try:
        with pytest.raises(JobError, match="row 'p22'"):
            build_plan(job, bad, compile_prompt(job.prompt))
    finally:
        prompt_table.SLICE_ROWS = saved


def result(key: str, prompt_id: str, status: str, at: float) -> Result:
    return Result(
        prompt_id=prompt_id,
        model="a",
        model_id="a",
        sample=0,
        request_key=key,
        status=status,
        attempts=1,
        started_at=at,
        finished_at=at,
        response=f"answer {key}" if status == "ok" else None,
        error_type=None if status == "ok" else "server_error",
    )


# (run, [(key, prompt, status, finished_at)]): an earlier output, then parts of two runs that
# answer some keys again (an ok after an error, an error after an ok, an ok twice).
RUNS = [
    ("run-a", [(f"k{i:02d}", f"p{i:02d}", "ok" if i % 3 else "error", 1.0 + i) for i in range(12)]),
    ("run-b", [(f"k{i:02d}", f"p{i:02d}", "ok", 50.0 + i) for i in (0, 3, 5, 6, 13, 14)]),
    ("run-c", [(f"k{i:02d}", f"p{i:02d}", "error", 90.0 + i) for i in (1, 3, 15)]),
    ("run-d", [("k16", "gone", "ok", 95.0), ("k17", "p17", "ok", 96.0)]),
]


def fold_runs(folder: Path, plan: Plan) -> pl.DataFrame:
    """Each run's results as parts, compacted after the first and after the last run."""
    output = folder / "results.parquet"
    for number, (run, rows) in enumerate(RUNS):
        sink = ResultSink(output, run, "t", flush_every=2)
        for key, prompt_id, status, at in rows:
            sink.add(result(key, prompt_id, status, at))
        sink.flush()
        sink.close()
        if number in (0, len(RUNS) - 1):
            compaction.compact(output, plan.table)
    return pl.read_parquet(output)


@pytest.mark.parametrize("user", [PLAIN, JINJA])
def test_compaction_in_small_batches_writes_the_same_rows_as_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user: str
) -> None:
    """Batches of 3 rows and slices of 4 prompts give the very rows, columns, types and
    order of one batch over everything, and each key's winner is the ok row, then the latest."""
    whole = fold_runs(tmp_path / "whole", make_plan(user))
    monkeypatch.setattr(compaction, "_BATCH_ROWS", 3)
    sliced = fold_runs(tmp_path / "sliced", make_plan(user, slice_rows=4))
    assert sliced.schema == whole.schema
    assert sliced.equals(whole)
    expected: dict[str, tuple[bool, float, str]] = {}
    for run, rows in RUNS:
        for key, _, status, at in rows:
            mine = (status == "ok", at, run)
            expected[key] = max(expected.get(key, mine), mine)
    assert dict(zip(whole["request_key"], whole["run_id"], strict=True)) == {
        key: run for key, (_, _, run) in expected.items()
    }
    first_seen = list(dict.fromkeys(k for _, rows in RUNS for k, *_ in rows))
    kept_in_output = [k for k in first_seen if expected[k][2] == "run-a"]
    assert whole["request_key"].to_list()[: len(kept_in_output)] == kept_in_output
    row = whole.filter(pl.col("request_key") == "k04")
    assert row["input_model"].to_list() == ["m1"] and row["note"].to_list() == ["n4"]
    assert whole.filter(pl.col(PROMPT_ID) == "gone")["q"].to_list() == [None]
