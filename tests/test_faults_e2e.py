"""Every gateway fault over a real socket: classification, attempts, the row written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from conftest import invoke, job_dict, make_prompts, write_job

from batchrun.gateway import GatewayThread

MAX_RETRIES = 2


def run_with(
    start_gateway: Callable[..., GatewayThread],
    limits: dict[str, object] | None = None,
    **settings: object,
) -> tuple[int, pl.DataFrame, GatewayThread, str]:
    gw = start_gateway(**settings)
    make_prompts(Path("prompts.parquet"), 3)
    job = job_dict(
        gw.url,
        models=["model-a"],
        limits={
            "concurrency": 2,
            "max_retries": MAX_RETRIES,
            "backoff_base_s": 0.001,
            **(limits or {}),
        },
    )
    write_job(Path("job.yaml"), job)
    result = invoke("run", "job.yaml")
    frame = (
        pl.read_parquet("out/results.parquet")
        if Path("out/results.parquet").exists()
        else pl.DataFrame()
    )
    return result.exit_code, frame, gw, result.output


RETRYABLE = [
    "S13",
    "S15",
    "S15b",
    "S16",
    "S16b",
    "S16c",
    "S16d",
    "S16e",
    "S17",
    "S23",
    "E408",
    "E409",
]


@pytest.mark.parametrize("scenario", RETRYABLE)
def test_retryable_faults_retry_then_fail(
    start_gateway: Callable[..., GatewayThread], scenario: str
) -> None:
    """A fault that never clears is retried max_retries times, then recorded as failed."""
    code, frame, gw, _ = run_with(start_gateway, model_scenarios={"model-a": scenario})
    assert code == 1
    assert frame.height == 3
    assert set(frame["status"]) == {"error"}
    assert set(frame["attempts"]) == {MAX_RETRIES + 1}
    assert gw.gateway.stats.requests == 3 * (MAX_RETRIES + 1)
    assert set(frame["error_type"]) == {"server_error"}
    assert frame["error_message"].null_count() == 0


@pytest.mark.parametrize("scenario", ["S10", "S10b", "S11"])
def test_429s_that_never_clear_fail_after_max_rate_limited_s(
    start_gateway: Callable[..., GatewayThread], scenario: str
) -> None:
    """429s are retried past max_retries, until the model made no progress for the bound."""
    limits = {"max_rate_limited_s": 0.5, "backoff_max_s": 0.05}
    code, frame, gw, _ = run_with(start_gateway, limits, model_scenarios={"model-a": scenario})
    assert code == 1
    assert frame.height == 3
    assert set(frame["status"]) == {"error"}
    assert set(frame["error_type"]) == {"rate_limited"}
    assert min(frame["attempts"]) > MAX_RETRIES + 1
    assert gw.gateway.stats.requests == frame["attempts"].sum()


@pytest.mark.parametrize("scenario", ["S26", "S26b", "E404", "E413"])
def test_row_faults_are_never_retried(
    start_gateway: Callable[..., GatewayThread], scenario: str
) -> None:
    """400-class faults fail the row at once: one attempt each."""
    code, frame, gw, _ = run_with(start_gateway, model_scenarios={"model-a": scenario})
    assert code == 1
    assert set(frame["error_type"]) == {"bad_request"}
    assert set(frame["attempts"]) == {1}
    assert gw.gateway.stats.requests == 3


@pytest.mark.parametrize("scenario", ["S07", "S07b", "S08", "S08b"])
def test_refusals_stop_the_run(start_gateway: Callable[..., GatewayThread], scenario: str) -> None:
    """A refused key or an empty balance stops the run after one request: exit 3."""
    code, frame, gw, output = run_with(start_gateway, model_scenarios={"model-a": scenario})
    assert code == 3
    assert gw.gateway.stats.requests == 1
    assert frame.height == 1 and frame["error_type"][0] == "auth"
    assert "the gateway refused the run" in output


@pytest.mark.parametrize("scenario", ["S09", "S09b", "S14", "E404b"])
def test_model_faults_stop_the_model(
    start_gateway: Callable[..., GatewayThread], scenario: str
) -> None:
    """No channel (or no price) for a model: three confirmations, then the model stops."""
    gw = start_gateway(model_scenarios={"model-a": scenario})
    make_prompts(Path("prompts.parquet"), 20)
    write_job(
        Path("job.yaml"), job_dict(gw.url, limits={"concurrency": 4, "backoff_base_s": 0.001})
    )
    result = invoke("run", "job.yaml")
    frame = pl.read_parquet("out/results.parquet")
    assert result.exit_code == 1
    assert gw.gateway.stats.by_model["model-a"] == 3
    a = frame.filter(pl.col("model") == "model-a")
    assert a.height == 20 and set(a["error_type"]) == {"model_unavailable"}
    assert set(frame.filter(pl.col("model") == "b")["status"]) == {"ok"}


def test_intermittent_429_and_500_all_end_ok(start_gateway: Callable[..., GatewayThread]) -> None:
    """With 20% 429s and 10% 500s, every row ends ok and attempts add up to what was sent."""
    gw = start_gateway(fault_rates={"S10": 0.2, "S13": 0.1}, seed=5)
    make_prompts(Path("prompts.parquet"), 20)
    write_job(
        Path("job.yaml"),
        job_dict(gw.url, limits={"concurrency": 4, "max_retries": 10, "backoff_base_s": 0.001}),
    )
    assert invoke("run", "job.yaml").exit_code == 0
    frame = pl.read_parquet("out/results.parquet")
    assert set(frame["status"]) == {"ok"}
    assert frame["attempts"].sum() == gw.gateway.stats.requests


def test_retry_after_is_honoured(start_gateway: Callable[..., GatewayThread]) -> None:
    """A 429 with Retry-After: 1 is retried after about a second."""
    gw = start_gateway(fault_rates={"S12": 0.3}, seed=1)
    make_prompts(Path("prompts.parquet"), 4)
    job = job_dict(gw.url, models=["model-a"], limits={"max_retries": 8, "backoff_base_s": 0.001})
    write_job(Path("job.yaml"), job)
    assert invoke("run", "job.yaml").exit_code == 0
    frame = pl.read_parquet("out/results.parquet")
    retried = frame.filter(pl.col("attempts") > 1)
    assert retried.height >= 1
    waited = (retried["finished_at"] - retried["started_at"]).dt.total_milliseconds()
    assert (waited >= 1000).all()


@pytest.mark.parametrize(
    ("scenario", "finish", "text_empty"),
    [
        ("S24", "length", False),  # the gateway says max_tokens: finish_reason_raw keeps it
        ("S24b", None, False),
        ("S24c", "stop", True),
        ("S24d", "content_filter", False),
    ],
)
def test_unusual_answers_are_results(
    start_gateway: Callable[..., GatewayThread], scenario: str, finish: str | None, text_empty: bool
) -> None:
    """Odd finish reasons and reasoning-only answers are ok rows, not errors."""
    code, frame, _gw, _ = run_with(start_gateway, model_scenarios={"model-a": scenario})
    assert code == 0
    assert set(frame["status"]) == {"ok"} and set(frame["attempts"]) == {1}
    assert frame["finish_reason"].to_list() == [finish] * 3
    if text_empty:
        assert set(frame["response"]) == {""}
        assert frame["reasoning"].null_count() == 0


def test_length_finish_is_not_retried(start_gateway: Callable[..., GatewayThread]) -> None:
    """finish_reason = length is a result: recorded once, never retried."""
    gw = start_gateway()
    make_prompts(Path("prompts.parquet"), 3)
    write_job(Path("job.yaml"), job_dict(gw.url, models=["model-a"], params={"max_tokens": 2}))
    assert invoke("run", "job.yaml").exit_code == 0
    frame = pl.read_parquet("out/results.parquet")
    assert set(frame["finish_reason"]) == {"length"}
    assert gw.gateway.stats.requests == 3


def test_missing_usage_is_null_not_zero(start_gateway: Callable[..., GatewayThread]) -> None:
    """A body without usage gives null token counts."""
    code, frame, _, _ = run_with(start_gateway, model_scenarios={"model-a": "S05"})
    assert code == 0
    assert frame["prompt_tokens"].null_count() == 3


@pytest.mark.parametrize(("models_shape", "out_at_first_answer"), [("oneapi", 8), ("missing", 2)])
def test_probes_hold_the_others_only_until_the_key_is_known_good(
    start_gateway: Callable[..., GatewayThread], models_shape: str, out_at_first_answer: int
) -> None:
    """A model list that answers proves the key: then slow first answers hold nobody up.

    Without a list, the first request of each model is a probe and the rest wait for it.
    """
    gw = start_gateway(latency_ms=800, models_shape=models_shape)
    make_prompts(Path("prompts.parquet"), 8)
    write_job(Path("job.yaml"), job_dict(gw.url, limits={"concurrency": 8}))
    # A gateway without a model list is sent to only when asked (issue 15).
    unchecked = ["--no-model-check"] if models_shape == "missing" else []
    result = invoke("run", "job.yaml", "--quiet", *unchecked)
    assert result.exit_code == 0, result.stderr
    assert gw.gateway.stats.in_flight_at_first_answer == out_at_first_answer
    assert gw.gateway.stats.max_in_flight == 8
