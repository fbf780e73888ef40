"""`batchrun run` end to end: the CLI, the built-in gateway on 127.0.0.1, real Parquet."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import yaml
from conftest import invoke, job_dict, make_prompts, write_job

from batchrun.gateway import GatewayThread
from batchrun.store import RESULT_SCHEMA

REPO = Path(__file__).resolve().parent.parent


def read(path: str = "out/results.parquet") -> pl.DataFrame:
    return pl.read_parquet(path)


def test_run_writes_one_ok_row_per_request(gateway: GatewayThread) -> None:
    """6 prompts x 2 models: 12 ok rows with usage, latency, ids and the input columns."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    result = invoke("run", "job.yaml")
    assert result.exit_code == 0, result.output
    frame = read()
    assert frame.height == 12
    assert gateway.gateway.stats.by_path["/v1/chat/completions"] == 12
    assert set(frame["status"]) == {"ok"}
    assert sorted(set(frame["model"])) == ["b", "model-a"]
    assert sorted(set(frame["model_id"])) == ["model-a", "model-b"]
    assert frame["request_key"].n_unique() == 12
    for column in (
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "latency_s",
        "response",
        "finish_reason",
        "response_id",
        "served_model",
        "started_at",
        "finished_at",
    ):
        assert frame[column].null_count() == 0, column
    assert (frame["total_tokens"] == frame["prompt_tokens"] + frame["completion_tokens"]).all()
    assert {"question", "expected", "prompt", "messages"} <= set(frame.columns)
    row = frame.filter((pl.col("prompt_id") == "p002") & (pl.col("model") == "b")).row(
        0, named=True
    )
    assert row["prompt"] == "What is 2 + 3?"
    assert row["response"] == "The answer is 5."
    for name, dtype in RESULT_SCHEMA.items():
        assert frame.schema[name] == dtype, name
    assert "model-a" in result.output and "p50 s" in result.output


def test_rerun_sends_nothing_and_keeps_rows(gateway: GatewayThread) -> None:
    """A rerun of a finished job sends zero requests and writes the same rows."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    assert invoke("run", "job.yaml").exit_code == 0
    first = read()
    sent = gateway.gateway.stats.requests
    again = invoke("run", "job.yaml")
    assert again.exit_code == 0
    assert gateway.gateway.stats.requests == sent
    second = read()
    assert second.columns == first.columns
    assert second.sort("request_key").equals(first.sort("request_key"))
    assert "12 already done" in again.output


def test_changed_param_resends_only_that_model(gateway: GatewayThread) -> None:
    """Editing one model's params re-sends that model's requests only."""
    job = job_dict(gateway.url)
    write_job(Path("job.yaml"), job)
    assert invoke("run", "job.yaml").exit_code == 0
    before = gateway.gateway.stats.by_model.copy()
    job["models"] = ["model-a", {"id": "model-b", "alias": "b", "params": {"temperature": 0.5}}]
    write_job(Path("job.yaml"), job)
    assert invoke("run", "job.yaml").exit_code == 0
    assert gateway.gateway.stats.by_model["model-a"] == before["model-a"]
    assert gateway.gateway.stats.by_model["model-b"] == before["model-b"] + 6
    frame = read()
    assert frame.height == 12  # the old model-b rows are superseded: out of the output
    assert frame["request_key"].n_unique() == 12
    kept = pl.read_parquet("out/results.superseded.parquet")
    assert kept.height == 6 and set(kept["model"]) == {"b"}


def test_csv_input_and_samples(gateway: GatewayThread) -> None:
    """A CSV prompt set with two samples per model gives rows x models x samples rows."""
    make_prompts(Path("prompts.csv"), 3)
    write_job(
        Path("job.yaml"),
        job_dict(gateway.url, input={"path": "prompts.csv", "id_column": "id"}, samples=2),
    )
    assert invoke("run", "job.yaml").exit_code == 0
    frame = read()
    assert frame.height == 3 * 2 * 2
    assert sorted(set(frame["sample"])) == [0, 1]


def test_retries_recorded_in_attempts(start_gateway: Callable[..., GatewayThread]) -> None:
    """With 30% of answers a 500, every row still ends ok and attempts count the retries."""
    gw = start_gateway(fault_rates={"S13": 0.3}, seed=3)
    write_job(
        Path("job.yaml"),
        job_dict(gw.url, limits={"concurrency": 4, "max_retries": 8, "backoff_base_s": 0.001}),
    )
    assert invoke("run", "job.yaml").exit_code == 0
    frame = read()
    assert set(frame["status"]) == {"ok"}
    assert frame["attempts"].sum() == gw.gateway.stats.requests
    assert frame["attempts"].max() > 1  # type: ignore[operator]


def test_bad_key_exits_3(start_gateway: Callable[..., GatewayThread]) -> None:
    """A refused key stops the run with exit code 3 after a handful of requests."""
    gw = start_gateway(keys=["sk-the-right-one"])
    make_prompts(Path("prompts.parquet"), 40)
    write_job(Path("job.yaml"), job_dict(gw.url))
    result = invoke("run", "job.yaml")
    assert result.exit_code == 3
    assert gw.gateway.stats.requests <= 4
    assert "the gateway refused the run" in result.output
    assert "API key was refused" in result.output


def test_unavailable_model_stops_others_finish(start_gateway: Callable[..., GatewayThread]) -> None:
    """A model without a channel stops early; the other model completes; exit 1."""
    gw = start_gateway(models=["model-a"])
    make_prompts(Path("prompts.parquet"), 30)
    write_job(Path("job.yaml"), job_dict(gw.url, limits={"concurrency": 2}))
    result = invoke("run", "job.yaml", "--no-model-check")
    assert result.exit_code == 1
    assert "is not offered by the gateway" in result.stderr  # the check warned
    frame = read()
    assert frame.filter(pl.col("model") == "model-a")["status"].to_list() == ["ok"] * 30
    failed_b = frame.filter(pl.col("model") == "b")
    assert failed_b.height == 30 and set(failed_b["error_type"]) == {"model_unavailable"}
    assert gw.gateway.stats.by_model["model-b"] <= 5
    assert "model b was stopped" in result.output


def test_max_failures_percentage(start_gateway: Callable[..., GatewayThread]) -> None:
    """--max-failures 60% accepts a run where half the requests failed."""
    gw = start_gateway(models=["model-a"])
    write_job(Path("job.yaml"), job_dict(gw.url))
    result = invoke("run", "job.yaml", "--max-failures", "60%", "--no-model-check")
    assert result.exit_code == 0


def test_demo_job_runs_as_shipped(tmp_path: Path) -> None:
    """jobs/demo.yaml writes 150 ok rows with usage and latency, and a rerun keeps 150."""
    shutil.copytree(REPO / "sample_data", tmp_path / "sample_data")
    (tmp_path / "jobs").mkdir()
    shutil.copy(REPO / "jobs" / "demo.yaml", tmp_path / "jobs" / "demo.yaml")
    result = invoke("run", "jobs/demo.yaml")
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet("results/demo.parquet")
    assert frame.height == 150
    assert set(frame["status"]) == {"ok"}
    assert frame["latency_s"].null_count() == 0 and frame["prompt_tokens"].null_count() == 0
    again = invoke("run", "jobs/demo.yaml")
    assert again.exit_code == 0
    assert pl.read_parquet("results/demo.parquet").columns == frame.columns
    assert pl.read_parquet("results/demo.parquet").height == 150


def test_eval_job_matches_demo_but_for_provider() -> None:
    """jobs/eval.yaml is the demo with the AIHubMix provider block."""
    demo = yaml.safe_load((REPO / "jobs" / "demo.yaml").read_text())
    real = yaml.safe_load((REPO / "jobs" / "eval.yaml").read_text())
    assert real["provider"] == {
        "base_url": "https://aihubmix.com/v1",
        "api_key_env": "AIHUBMIX_API_KEY",
    }
    for key in ("input", "prompt", "models", "params"):
        assert real[key] == demo[key], key


def test_validate_and_dry_run_send_nothing(gateway: GatewayThread) -> None:
    """validate and --dry-run print the plan and send zero requests."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    for args in (["validate", "job.yaml"], ["run", "job.yaml", "--dry-run"]):
        result = invoke(*args)
        assert result.exit_code == 0
        assert "6 rows x 2 models x 1 samples = 12 requests" in result.output
    assert gateway.gateway.stats.all_requests == 0
    assert not Path("out/results.parquet").exists()


def test_python_dash_m_and_help() -> None:
    """`python -m batchrun --help` works and lists the commands."""
    out = subprocess.run(
        [sys.executable, "-m", "batchrun", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    for command in ("run", "validate", "gateway"):
        assert command in out
