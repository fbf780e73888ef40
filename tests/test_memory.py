"""Memory flat in the size of a job: what a run and a rerun hold per request, and what not."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import polars as pl
import pytest
from conftest import invoke, job_dict, write_job

from batchrun import store
from batchrun.config import Job
from batchrun.dataset import PROMPT_ID
from batchrun.gateway import GatewayThread
from batchrun.keyset import KeySet
from batchrun.plan import Plan, build_plan
from batchrun.stats import quantile
from batchrun.summary import ModelTally, RunTally
from batchrun.templates import compile_prompt


def _key(i: int) -> str:
    return hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest()


def test_done_keys_of_a_rerun_cost_16_bytes_a_key(tmp_path: Path) -> None:
    """done_keys gives a KeySet (16 bytes a key), not a set of strings (over 100 a key)."""
    output = tmp_path / "r.parquet"
    keys = [_key(i) for i in range(20_000)]
    pl.DataFrame(
        {"request_key": keys, "status": ["ok"] * 20_000, "error_type": [None] * 20_000},
        schema_overrides={"error_type": pl.String},
    ).write_parquet(output)
    done = store.done_keys(output)
    assert isinstance(done, KeySet)
    assert len(done) == 20_000 and keys[123] in done and _key(20_001) not in done
    assert len(done._hi) * 8 + len(done._lo) * 8 == 16 * 20_000


def test_run_without_judges_reads_no_answers_back(
    gateway: GatewayThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a judge score the ok answers are never read back (they were, all of them)."""

    def forbidden(*_: object) -> pl.DataFrame:
        raise AssertionError("current_ok read every answer of a run that has no judge")

    import batchrun.compaction

    monkeypatch.setattr(batchrun.compaction, "current_ok", forbidden)
    job = write_job(tmp_path / "job.yaml", job_dict(gateway.url))
    result = invoke("run", str(job))
    assert result.exit_code == 0, result.output


def test_superseded_rows_found_across_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows read a batch at a time: a superseded row in a later batch is still found."""
    from batchrun import supersede

    monkeypatch.setattr(supersede, "_BATCH_ROWS", 2)
    plan = _plan({PROMPT_ID: ["a", "b", "c"], "q": ["1", "2", "3"]})
    current = {r.prompt_id: r.key for r in plan.requests()}
    rows = pl.DataFrame(
        {
            "request_key": [current["a"], current["b"], "stale-key"],
            PROMPT_ID: ["a", "b", "c"],
            "model": ["m", "m", "m"],
            "sample": [0, 0, 0],
        }
    )
    source = tmp_path / "r.parquet"
    rows.write_parquet(source)
    assert supersede._superseded([source], plan) == {"stale-key"}


def _plan(columns: dict[str, list[str]], **job: object) -> Plan:
    """The plan of a one-model job over ``columns`` (``{{ q }}`` as the user turn)."""
    spec = Job.model_validate(
        {
            "name": "t",
            "provider": "mock",
            "input": {"path": "x.parquet"},
            "prompt": {"user": "{{ q }}"},
            "models": ["m"],
            "output": {"path": "o.parquet"},
            **job,
        }
    )
    return build_plan(spec, pl.DataFrame(columns), compile_prompt(spec.prompt))


def test_summary_percentiles_match_the_exact_quantile() -> None:
    """p50 and p95 read from the latency array equal stats.quantile over the same values."""
    tally = RunTally()
    tally.models["m"] = ModelTally()
    values = [random.Random(i).lognormvariate(0, 1) for i in range(1000)]
    tally.models["m"].latencies.extend(values)
    row = tally.rows()[0]
    assert row["latency_p50_s"] == pytest.approx(quantile(values, 0.5), rel=1e-12)
    assert row["latency_p95_s"] == pytest.approx(quantile(values, 0.95), rel=1e-12)
