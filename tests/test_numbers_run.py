"""Issue 13, the run's side: every figure a run reports is the right one.

Each test is named after the finding it covers and runs batchrun end to end
against the built-in gateway on 127.0.0.1, reading the real Parquet output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from conftest import invoke, job_dict, make_prompts, write_job

from batchrun.gateway import GatewayThread


def read(path: str = "out/results.parquet") -> pl.DataFrame:
    """The results file."""
    return pl.read_parquet(path)


def test_finding_1_changed_params_leave_one_current_row_per_prompt(
    gateway: GatewayThread,
) -> None:
    """After a model's params change, the output holds one row per (prompt, model, sample)."""
    job = job_dict(gateway.url)
    write_job(Path("job.yaml"), job)
    assert invoke("run", "job.yaml").exit_code == 0
    job["models"] = ["model-a", {"id": "model-b", "alias": "b", "params": {"temperature": 0.7}}]
    write_job(Path("job.yaml"), job)
    result = invoke("run", "job.yaml")
    assert result.exit_code == 0
    frame = read()
    per_prompt = frame.group_by("prompt_id", "model", "sample").len()
    assert per_prompt["len"].max() == 1
    assert frame.filter(pl.col("model") == "b").height == 6
    assert "moved to out/results.superseded.parquet" in result.stderr
    # The old answers were paid for: they are kept beside the output, not lost.
    assert pl.read_parquet("out/results.superseded.parquet").height == 6
    # compare counts each model once.
    table = json.loads(invoke("compare", "out/results.parquet", "--format", "json").stdout)
    requests = {row["model"]: row["requests"] for row in table["models"]}
    assert requests == {"model-a": 6, "b": 6}


def test_finding_1_fewer_samples_supersede_the_extra_ones(gateway: GatewayThread) -> None:
    """Samples the job no longer asks for leave the output too."""
    write_job(Path("job.yaml"), job_dict(gateway.url, samples=2))
    assert invoke("run", "job.yaml").exit_code == 0
    assert read().height == 24
    write_job(Path("job.yaml"), job_dict(gateway.url, samples=1))
    assert invoke("run", "job.yaml").exit_code == 0
    assert read().height == 12 and set(read()["sample"]) == {0}


def test_finding_1_an_unchanged_rerun_reads_no_keys(gateway: GatewayThread) -> None:
    """A rerun with the same settings keeps every row and writes no sidecar."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    assert invoke("run", "job.yaml").exit_code == 0
    assert invoke("run", "job.yaml").exit_code == 0
    assert read().height == 12
    assert not Path("out/results.superseded.parquet").exists()


def test_finding_4_rerun_exits_1_while_failed_rows_remain(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """Rows that failed with HTTP 400 keep a cron rerun at exit 1, and its manifest says so."""
    gw = start_gateway(model_scenarios={"model-b": "S26"})
    write_job(Path("job.yaml"), job_dict(gw.url))
    first = invoke("run", "job.yaml")
    assert first.exit_code == 1
    again = invoke("run", "job.yaml")
    assert again.exit_code == 1, again.output
    assert "6 of 12 rows in out/results.parquet failed" in again.stderr
    assert "6 in earlier runs" in again.stderr
    assert "--retry-errors" in again.stderr
    manifest = json.loads(Path("out/results.parquet.manifest.json").read_text())
    assert manifest["latest"]["exit_code"] == 1
    assert manifest["latest"]["output_state"]["failed"] == 6
    # Tolerated failures are tolerated on the rerun too.
    assert invoke("run", "job.yaml", "--max-failures", "6").exit_code == 0


def test_finding_8_per_model_rate_is_its_own(start_gateway: Callable[..., GatewayThread]) -> None:
    """A slow model's req/s is not the fast model's: each is over its own busy time."""
    gw = start_gateway(model_latency_ms={"model-a": 0.0, "model-b": 150.0})
    make_prompts(Path("prompts.parquet"), 8)
    write_job(Path("job.yaml"), job_dict(gw.url, limits={"concurrency": 2}))
    result = invoke("run", "job.yaml", "--json")
    assert result.exit_code == 0
    rates = {row["model"]: row["rate_per_s"] for row in json.loads(result.stdout)["models"]}
    assert rates["model-a"] > 2 * rates["b"]


def test_finding_10_hint_names_what_resends_the_failures(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """After transient failures the hint says a plain rerun resends them; no '1 requests'."""
    gw = start_gateway(model_scenarios={"model-b": "S13"})
    write_job(
        Path("job.yaml"),
        job_dict(gw.url, limits={"concurrency": 2, "max_retries": 1, "backoff_base_s": 0.001}),
    )
    result = invoke("run", "job.yaml")
    assert result.exit_code == 1
    assert "a plain rerun sends the 6 transient failures again" in result.stderr
    assert "--retry-errors" not in result.stderr
    assert " 1 requests" not in result.stderr


RUBRIC = 'Question: {{ question }}\nAnswer: {{ response }}\nReply with JSON: {"score": 1-10}'


def test_finding_5_judge_cost_in_summary_manifest_plan_and_compare(
    gateway: GatewayThread,
) -> None:
    """The judge's requests and cost show in the plan, summary, JSON, manifest and compare."""
    judge = {"name": "quality", "grader": "judge", "model": "judge-model", "rubric": RUBRIC}
    prices = {
        "model-a": {"input": 1.0, "output": 2.0},
        "b": {"input": 1.0, "output": 2.0},
        "judge-model": {"input": 10.0, "output": 20.0},
    }
    write_job(Path("job.yaml"), job_dict(gateway.url, scores=[judge], prices=prices))
    plan = invoke("run", "job.yaml", "--dry-run")
    assert "judge quality (judge-model): up to 12 requests" in plan.stdout
    assert "0 already judged" in plan.stdout
    result = invoke("run", "job.yaml", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    judges = read("out/results.judge-quality.parquet")
    judge_cost = judges["cost_usd"].sum()
    assert judge_cost > 0
    assert summary["judge_cost_usd"] == pytest.approx(judge_cost)
    assert summary["judges"][0]["requests"] == 12
    assert summary["total_cost_usd"] == pytest.approx(summary["cost_usd"] + judge_cost)
    manifest = json.loads(Path("out/results.parquet.manifest.json").read_text())
    assert manifest["latest"]["judge_cost_usd"] == pytest.approx(judge_cost)
    frame = read()
    assert frame["judge_cost_usd"].sum() == pytest.approx(judge_cost)
    assert frame["judge_requests"].to_list() == [1] * 12
    rerun = invoke("run", "job.yaml")
    assert "nothing to send" in rerun.stderr and "judge quality" not in rerun.stderr
    again = invoke("run", "job.yaml", "--dry-run")
    assert "12 already done, 0 to send" in again.stdout
    assert "12 already judged" in again.stdout
    compared = invoke("compare", "out/results.parquet", "--format", "json")
    assert compared.exit_code == 0
    assert "judge_cost_usd" in compared.stdout
