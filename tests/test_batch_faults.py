"""Batch mode's faults, each as a class, against the built-in gateway over a real socket."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import invoke, job_dict, make_prompts, write_job

from batchrun.gateway import GatewayThread
from batchrun.gateway.batches import BatchStore
from batchrun.gateway.settings import BatchSettings
from batchrun.remote_work import record_path
from batchrun.store import part_files

OUTPUT = Path("out/results.parquet")
CLAUDE = {"id": "claude-sonnet-4-5", "api": "messages"}
Start = Callable[..., GatewayThread]


def batch_job(base_url: str, models: list[Any], rows: int = 6, **overrides: Any) -> None:
    make_prompts(Path("prompts.parquet"), rows)
    settings: dict[str, Any] = {"mode": "batch", "models": models, **overrides}
    write_job(Path("job.yaml"), job_dict(base_url, **settings))


def store_of(gw: GatewayThread) -> BatchStore:
    routes = gw.gateway._batches
    assert routes is not None
    return routes.store


def rows() -> pl.DataFrame:
    """Every row written so far, output and parts, latest per key."""
    sources = ([OUTPUT] if OUTPUT.exists() else []) + part_files(OUTPUT)
    frame = pl.concat([pl.read_parquet(s) for s in sources], how="diagonal_relaxed")
    return frame.unique(subset="request_key", keep="last")


def test_a_gateway_without_batches_stops_with_one_line_and_sends_nothing_else(
    start_gateway: Start,
) -> None:
    """One-api/new-api (and the built-in gateway by default) answer 404 on /v1/batches."""
    gw = start_gateway()
    batch_job(gw.url, ["model-a"])
    result = invoke("run", "job.yaml")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("batchrun: error: job.yaml:")
    assert "does not serve a batch API (404 on GET /v1/batches)" in lines[-1]
    assert "Traceback" not in result.output
    assert dict(gw.gateway.stats.by_path) == {"/v1/batches": 1}
    assert not record_path(OUTPUT).exists()


def test_an_openai_batch_failing_validation_names_the_line_and_exits_2(
    start_gateway: Start,
) -> None:
    """The failed batch's rows are batch_failed; the line and reason are named; exit 2."""
    gw = start_gateway(batches=BatchSettings(invalid_batches=1))
    batch_job(gw.url, ["model-a"])
    assert invoke("run", "job.yaml").exit_code == 0
    second = invoke("run", "job.yaml")
    assert second.exit_code == 2
    assert "failed validation: line 1 (prompt p000): simulated validation failure" in (
        second.stderr
    )
    assert "fix the job and rerun" in second.stderr
    assert set(rows()["error_type"]) == {"batch_failed"}
    assert not record_path(OUTPUT).exists()
    third = invoke("run", "job.yaml", "--wait")  # the gateway accepts the next one
    assert third.exit_code == 0, third.output
    assert set(pl.read_parquet(OUTPUT)["status"]) == {"ok"}


def test_an_anthropic_batch_refused_at_creation_exits_2_and_leaves_nothing_pending(
    start_gateway: Start,
) -> None:
    gw = start_gateway(batches=BatchSettings(invalid_batches=1))
    batch_job(gw.url, [CLAUDE])
    result = invoke("run", "job.yaml")
    assert result.exit_code == 2
    assert "refused the batch as invalid: requests.0.params.model" in result.stderr
    assert not record_path(OUTPUT).exists()
    assert store_of(gw).batches == {}


def test_partial_line_errors_are_classified_like_online_and_only_they_are_resubmitted(
    start_gateway: Start,
) -> None:
    """Lines answered 500 (both APIs) become server_error rows; the next run resubmits them."""
    gw = start_gateway(batches=BatchSettings(line_fail_rate=0.3), seed=3)
    batch_job(gw.url, ["model-a", CLAUDE], rows=20)
    first = invoke("run", "job.yaml", "--wait")
    assert first.exit_code == 1  # failed rows, as online
    frame = pl.read_parquet(OUTPUT)
    failed = frame.filter(pl.col("status") != "ok")
    assert failed.height > 0 and set(failed["error_type"]) == {"server_error"}
    assert set(failed["http_status"]) == {500} and set(failed["model"]) == {
        "model-a",
        "claude-sonnet-4-5",
    }
    store = store_of(gw)
    store.config.line_fail_rate = 0.0
    second = invoke("run", "job.yaml", "--wait")
    assert second.exit_code == 0, second.output
    resubmitted = {line["custom_id"] for b in list(store.batches.values())[2:] for line in b.lines}
    assert resubmitted == set(failed["request_key"])
    assert set(pl.read_parquet(OUTPUT)["status"]) == {"ok"}


@pytest.mark.parametrize("fault", ["cut_files", "missing_files"])
@pytest.mark.parametrize("model", ["model-a", "claude"])
def test_a_cut_or_missing_results_file_is_fetched_again(
    start_gateway: Start, fault: str, model: str
) -> None:
    gw = start_gateway(batches=BatchSettings(**{fault: 1}))
    batch_job(gw.url, [CLAUDE if model == "claude" else model])
    result = invoke("run", "job.yaml", "--wait")
    assert result.exit_code == 0, result.output
    assert "the results file is cut or missing" in result.stderr
    assert len(store_of(gw).batches) == 1
    frame = pl.read_parquet(OUTPUT)
    assert frame.height == 6 and set(frame["status"]) == {"ok"}


def test_a_results_file_that_stays_cut_sends_the_unanswered_requests_again(
    start_gateway: Start,
) -> None:
    gw = start_gateway(batches=BatchSettings(cut_files=3))
    batch_job(gw.url, ["model-a"], rows=40)
    result = invoke("run", "job.yaml", "--wait")
    assert "the results stayed incomplete after 3 tries" in result.stderr
    answered = rows()
    assert 0 < answered.height < 40 and set(answered["status"]) == {"ok"}
    again = invoke("run", "job.yaml", "--wait")
    assert again.exit_code == 0, again.output
    sizes = [len(b.lines) for b in store_of(gw).batches.values()]
    assert sizes == [40, 40 - answered.height]
    assert pl.read_parquet(OUTPUT).height == 40


def test_a_batch_the_provider_lost_is_submitted_again(start_gateway: Start) -> None:
    gw = start_gateway(batches=BatchSettings(delay_s=60))
    batch_job(gw.url, ["model-a"])
    assert invoke("run", "job.yaml").exit_code == 0
    store = store_of(gw)
    store.batches.clear()  # as a gateway that restarted
    store.config.delay_s = 0
    again = invoke("run", "job.yaml", "--wait")
    assert again.exit_code == 0, again.output
    assert "unknown to the provider" in again.stderr
    assert pl.read_parquet(OUTPUT).height == 6


def test_status_shows_pending_batches_and_cancel_cancels_them(start_gateway: Start) -> None:
    """status lists each pending batch with counts and age; cancel asks the provider; the
    next run collects what the cancelled batch answered and submits the rest again."""
    gw = start_gateway(batches=BatchSettings(delay_s=60))
    batch_job(gw.url, ["model-a", CLAUDE])
    assert invoke("run", "job.yaml").exit_code == 0
    status = invoke("status", "job.yaml")
    assert status.exit_code == 0, status.output
    pending = [line for line in status.stdout.splitlines() if line.startswith("pending batch")]
    assert len(pending) == 2
    assert "(model-a, submitted): 0/6 finished" in status.stdout
    assert "submitted 0.0 h ago" in status.stdout
    as_json = json.loads(invoke("status", "job.yaml", "--json").stdout)
    assert [b["requests"] for b in as_json["pending_batches"]] == [6, 6]

    cancelled = invoke("cancel", "job.yaml")
    assert cancelled.exit_code == 0, cancelled.output
    assert "asked the provider to cancel 2 batch(es)" in cancelled.stdout
    assert all(b.cancelled_at is not None for b in store_of(gw).batches.values())
    record = json.loads(record_path(OUTPUT).read_text())["jobs"]
    assert {w["status"] for w in record} == {"cancelling"}

    store_of(gw).config.delay_s = 0
    after = invoke("run", "job.yaml", "--wait")
    assert after.exit_code == 0, after.output
    assert len(store_of(gw).batches) == 4  # the cancelled two, and the rest submitted again
    assert pl.read_parquet(OUTPUT).height == 12


def test_online_and_batch_models_share_one_job(start_gateway: Start) -> None:
    """mode: batch on one model: the other stays online; both land in one schema."""
    gw = start_gateway(batches=BatchSettings())
    prices = {"model-a": {"input": 1, "output": 2}, "model-b": {"input": 1, "output": 2}}
    batch_job(
        gw.url,
        ["model-a", {"id": "model-b", "mode": "batch"}],
        mode="online",
        prices=prices,
    )
    result = invoke("run", "job.yaml", "--wait")
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(OUTPUT)
    online = frame.filter(pl.col("model") == "model-a")
    batched = frame.filter(pl.col("model") == "model-b")
    assert set(online["mode"]) == {"online"} and online["latency_s"].null_count() == 0
    assert online["batch_id"].null_count() == 6
    assert set(batched["mode"]) == {"batch"} and batched["latency_s"].null_count() == 6
    ratio = batched["cost_usd"].sum() / online["cost_usd"].sum()
    assert ratio == pytest.approx(0.5, rel=0.05)  # the same prompts and answers


def test_the_plan_prices_batch_rows_at_half_and_says_so_once(start_gateway: Start) -> None:
    gw = start_gateway()
    prices = {"model-a": {"input": 2000, "output": 4000}}
    batch_job(gw.url, ["model-a"], mode="online", prices=prices)
    online = invoke("run", "job.yaml", "--dry-run").stdout
    batch_job(gw.url, ["model-a"], prices=prices)
    halved = invoke("run", "job.yaml", "--dry-run").stdout
    assert halved.count("batch prices: half the listed price for model-a") == 1
    assert "mode: batch for model-a" in halved
    assert _cost(halved) == pytest.approx(_cost(online) / 2, rel=0.01)
    explicit = {
        "model-a": {"input": 2000, "output": 4000, "batch_input": 500, "batch_output": 1000}
    }
    batch_job(gw.url, ["model-a"], prices=explicit)
    quarter = invoke("run", "job.yaml", "--dry-run").stdout
    assert "batch prices: half" not in quarter
    assert _cost(quarter) == pytest.approx(_cost(online) / 4, rel=0.01)
    assert gw.gateway.stats.all_requests == 0


def _cost(plan: str) -> float:
    line = next(line for line in plan.splitlines() if line.startswith("estimated cost"))
    return float(line.split("$")[1].split(" ")[0].replace(",", ""))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"id": "gemini-2.5-flash", "api": "gemini"}, "no batch API takes"),
        ({"id": "model-a", "stream": True}, "batch answers are not streamed"),
    ],
)
def test_batch_mode_refuses_what_no_batch_api_takes(
    start_gateway: Start, model: dict[str, Any], expected: str
) -> None:
    gw = start_gateway(batches=BatchSettings())
    batch_job(gw.url, [model])
    result = invoke("run", "job.yaml")
    assert result.exit_code == 2
    assert expected in result.stderr and "job.yaml:" in result.stderr
    assert gw.gateway.stats.all_requests == 0


def test_a_budget_reached_by_collected_rows_submits_nothing_more(start_gateway: Start) -> None:
    """Collected rows count against limits.budget_usd at batch prices; once it is reached
    the run submits no further batch."""
    gw = start_gateway(batches=BatchSettings())
    prices = {"model-a": {"input": 1000, "output": 1000}}
    batch_job(gw.url, ["model-a"], rows=10, prices=prices, limits={"batch_size": 5})
    first = invoke("run", "job.yaml", "--wait")
    assert first.exit_code == 0, first.output
    frame = pl.read_parquet(OUTPUT)
    spent = frame["cost_usd"].sum()
    make_prompts(Path("prompts.parquet"), 20)  # ten new prompts
    batch_job(
        gw.url,
        ["model-a"],
        rows=20,
        prices=prices,
        limits={"batch_size": 5, "budget_usd": spent / 2},
    )
    store = store_of(gw)
    store.config.delay_s = 60
    second = invoke("run", "job.yaml")  # submits the ten new ones: nothing collected yet
    assert second.exit_code == 0, second.output
    assert len(store.batches) == 4
    for batch in store.batches.values():
        batch.delay_s = 0
    make_prompts(Path("prompts.parquet"), 30)  # ten more, not yet submitted
    third = invoke("run", "job.yaml")  # collects: past the budget, so submits nothing
    assert third.exit_code == 1
    assert "budget" in third.stderr
    assert len(store.batches) == 4
