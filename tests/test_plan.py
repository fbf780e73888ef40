"""The plan: one request per (row, model, sample), stable keys, merged params."""

from __future__ import annotations

import json

import polars as pl

from batchrun.config import Job
from batchrun.dataset import PROMPT_ID
from batchrun.plan import build_plan
from batchrun.templates import compile_prompt


def make_job(**overrides: object) -> Job:
    data: dict[str, object] = {
        "name": "t",
        "provider": "mock",
        "input": {"path": "x.parquet"},
        "prompt": {"user": "{{ q }}"},
        "models": ["m1", {"id": "m2", "alias": "two", "params": {"temperature": 0.7}}],
        "params": {"temperature": 0, "max_tokens": 10},
        "samples": 2,
        "output": {"path": "o.parquet"},
    }
    data.update(overrides)
    return Job.model_validate(data)


FRAME = pl.DataFrame({PROMPT_ID: ["a", "b", "c"], "q": ["x", "y", "z"]})


def plan_for(job: Job):  # type: ignore[no-untyped-def]
    return build_plan(job, FRAME, compile_prompt(job.prompt))


def test_counts_and_interleaving() -> None:
    """rows x models x samples requests, models interleaved within each row."""
    requests = list(plan_for(make_job()).requests())
    assert len(requests) == 3 * 2 * 2
    assert [(r.prompt_id, r.model.name, r.sample) for r in requests[:4]] == [
        ("a", "m1", 0),
        ("a", "m1", 1),
        ("a", "two", 0),
        ("a", "two", 1),
    ]
    assert len({r.key for r in requests}) == 12


def test_body_is_merged_params() -> None:
    """The body carries the model, the messages and job params overridden per model."""
    requests = list(plan_for(make_job()).requests())
    body = json.loads(requests[2].body)
    assert body == {
        "model": "m2",
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 0.7,
        "max_tokens": 10,
    }


def test_keys_are_stable_and_change_only_with_what_is_sent() -> None:
    """Same job, same keys; a changed model param changes only that model's keys."""
    first = {(r.prompt_id, r.model.name, r.sample): r.key for r in plan_for(make_job()).requests()}
    again = {(r.prompt_id, r.model.name, r.sample): r.key for r in plan_for(make_job()).requests()}
    assert first == again
    changed_job = make_job(
        models=["m1", {"id": "m2", "alias": "two", "params": {"temperature": 0.9}}]
    )
    changed = {
        (r.prompt_id, r.model.name, r.sample): r.key for r in plan_for(changed_job).requests()
    }
    same = [k for k in first if first[k] == changed[k]]
    assert all(k[1] == "m1" for k in same)
    assert len(same) == 6


def test_skip_and_shard() -> None:
    """Done keys are skipped; shards partition the requests."""
    plan = plan_for(make_job())
    keys = [r.key for r in plan.requests()]
    assert [r.key for r in plan.requests(skip=set(keys[:5]))] == keys[5:]
    shards = [[r.key for r in plan.requests(shard=(i, 3))] for i in range(3)]
    assert sorted(key for shard in shards for key in shard) == sorted(keys)
