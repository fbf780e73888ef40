"""Each rate-limit dialect over a real socket: the built-in gateway words it, batchrun rides it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import TEST_KEY, invoke, job_dict, make_prompts, write_job

from batchrun.gateway import GatewayThread
from batchrun.gateway.counters import FixedWindow
from batchrun.gateway.limits import DIALECT_HEADER

Start = Callable[..., GatewayThread]


def run_job(gw: GatewayThread, rows: int, **job: Any) -> tuple[dict[str, Any], float]:
    """Run a job of ``rows`` prompts; the --json summary and the seconds it took."""
    make_prompts(Path("prompts.parquet"), rows)
    limits = {"concurrency": 8, "timeout_s": 10, "backoff_base_s": 0.01, **job.pop("limits", {})}
    write_job(Path("job.yaml"), job_dict(gw.url, limits=limits, **job))
    started = time.monotonic()
    result = invoke("run", "job.yaml", "--json", "--quiet")
    seconds = time.monotonic() - started
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet("out/results.parquet")
    assert set(frame["status"]) == {"ok"}
    return json.loads(result.stdout), seconds


def model_row(summary: dict[str, Any], model: str) -> dict[str, Any]:
    return next(row for row in summary["models"] if row["model"] == model)


def post(url: str, headers: dict[str, str], stream: bool = False) -> tuple[int, dict[str, str]]:
    """One chat request (streamed if ``stream``); its status and headers (lower-cased)."""
    messages = [{"role": "user", "content": "hi"}]
    body = json.dumps({"model": "model-a", "messages": messages, "stream": stream})
    request = urllib.request.Request(
        url + "/chat/completions",
        data=body.encode(),
        headers={
            "Authorization": f"Bearer {TEST_KEY}",
            "Content-Type": "application/json",
            **headers,
        },
    )
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}


@pytest.mark.parametrize(
    ("dialect", "on_answer", "on_429"),
    [
        ("openai", "x-ratelimit-reset-requests", "retry-after-ms"),
        ("anthropic", "anthropic-ratelimit-requests-reset", "retry-after"),
        ("litellm-key", "x-ratelimit-api_key-requests_reset_at", "retry-after"),
        ("litellm", None, "llm_provider-retry-after"),
    ],
)
def test_a_request_header_chooses_the_dialect(
    start_gateway: Start, dialect: str, on_answer: str | None, on_429: str
) -> None:
    """``X-Sim-Ratelimit`` words the same limit in each dialect, on the answer and the 429."""
    gw = start_gateway(key_rpm=60, model_rpm={"model-a": 60}, rate_limit_window_s=1.0)
    status, headers = post(gw.url, {DIALECT_HEADER: dialect})
    assert status == 200
    if on_answer is not None:
        assert on_answer in headers
    status, headers = post(gw.url, {DIALECT_HEADER: dialect})
    assert status == 429 and on_429 in headers
    if dialect == "litellm":
        assert "retry-after" not in headers


def test_openai_headers_undeclared_are_ridden_without_429s_or_bursts(start_gateway: Start) -> None:
    """1,200 rpm over a 2 s sliding window, nothing declared: paced by the headers."""
    gw = start_gateway(
        model_rpm={"model-a": 1200}, rate_limit_window_s=2.0, ratelimit_dialect="openai"
    )
    summary, _ = run_job(gw, 60, models=["model-a"])
    assert gw.gateway.stats.rate_limited <= 3
    row = model_row(summary, "model-a")
    assert row["held_by"] == "gateway rpm" and row["limit_used"] > 0.9
    arrivals = gw.gateway.limits.arrivals["model-a"]
    per_second = Counter(int(t - arrivals[0]) for t in arrivals)
    assert max(per_second.values()) <= 20 + 1  # the pace plus the burst


def test_streamed_answers_carry_the_budget_headers_and_they_pace_the_run(
    start_gateway: Start,
) -> None:
    """A stream's headers come with its status line, before its events: the gateway puts its
    budget there, and a streamed run with nothing declared paces by the limit they announce,
    not by one learned from 429s."""
    gw = start_gateway(
        model_rpm={"model-a": 2400},
        rate_limit_window_s=1.0,
        ratelimit_dialect="openai",
        stream_chunk_ms=1,
    )
    status, headers = post(gw.url, {}, stream=True)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert headers["x-ratelimit-remaining-requests"] == "39"
    summary, _ = run_job(gw, 40, models=["model-a"], stream=True)
    assert gw.gateway.stats.rate_limited <= 3
    assert model_row(summary, "model-a")["pace_per_min"] == 2400


def test_anthropic_headers_asked_for_per_request_pace_the_run(start_gateway: Start) -> None:
    """A one-api gateway asked (per request) for Anthropic's headers: they set the pace."""
    gw = start_gateway(model_rpm={"model-a": 1200}, rate_limit_window_s=2.0)
    provider = {"base_url": gw.url, "api_key_env": "BATCHRUN_TEST_KEY"}
    provider["headers"] = {DIALECT_HEADER: "anthropic"}  # type: ignore[assignment]
    summary, _ = run_job(gw, 60, models=["model-a"], provider=provider)
    assert model_row(summary, "model-a")["held_by"] == "gateway rpm"
    assert gw.gateway.stats.rate_limited <= 3


def test_litellm_deployment_429s_with_only_llm_provider_retry_after(start_gateway: Start) -> None:
    """20 a window (3 s, fixed), 429s carrying only ``llm_provider-retry-after``: all ok,
    few 429s, and the pace learned is the window's budget over its length."""
    gw = start_gateway(
        model_rpm={"model-a": 400},
        rate_limit_window_s=3.0,
        rate_limit_retry_after_s=3.0,
        ratelimit_dialect="litellm",
        latency_ms=30,
    )
    summary, _ = run_job(gw, 30, models=["model-a"])
    assert gw.gateway.stats.rate_limited <= 5
    pace = model_row(summary, "model-a")["pace_per_min"]
    assert 250 <= pace <= 450  # 20 a window of about 3 s


def test_litellm_key_limit_waits_for_reset_at_not_for_the_60s_advice(start_gateway: Start) -> None:
    """The key's window resets in 2 s (``..._reset_at``) though its 429s say 60 s."""
    gw = start_gateway(key_rpm=600, rate_limit_window_s=2.0, ratelimit_dialect="litellm-key")
    summary, seconds = run_job(gw, 25)
    assert seconds < 30  # one 60 s wait would be more
    assert model_row(summary, "model-a")["held_by"].startswith("key gateway rpm")


def test_max_parallel_429s_cap_requests_in_flight_and_wait_no_minute(start_gateway: Start) -> None:
    """max_parallel 3 (429, retry-after 60), concurrency 12: done in about 24 x 0.1 / 3 s."""
    gw = start_gateway(max_parallel=3, latency_ms=100)
    _, seconds = run_job(gw, 24, models=["model-a"], limits={"concurrency": 12})
    assert seconds < 10


def test_a_mock_job_chooses_its_gateway_dialect() -> None:
    """`provider: mock` sets the built-in gateway's dialect and limits: OpenAI headers at
    60 rpm on a 1 s window are paced, every row ends ok and none met a 429."""
    mock = {
        "mock": {
            "ratelimit_dialect": "openai",
            "model_rpm": {"model-a": 600},
            "rate_limit_window_s": 1,
        }
    }
    make_prompts(Path("prompts.parquet"), 12)
    job = job_dict("http://unused", provider=mock, models=["model-a"])
    write_job(Path("job.yaml"), job)
    result = invoke("run", "job.yaml", "--json")
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet("out/results.parquet")
    assert frame.height == 12 and set(frame["status"]) == {"ok"}
    assert json.loads(result.stdout)["models"][0]["rate_limited"] == 0


def test_a_fixed_window_starts_with_the_first_request_after_the_last_one_ended() -> None:
    """LiteLLM's windows start with a request, not on the clock's minute: a run's first
    request always meets a whole window (20 a minute), refusals counted, then a new one."""
    window = FixedWindow(20, 60.0)
    assert window.state(1000.5).remaining == 20  # none started: a whole window
    assert [window.take(1000.5 + i * 0.1) for i in range(20)] == [0.0] * 20
    assert window.take(1010.5) == pytest.approx(50.0)
    assert window.state(1010.5).reset_s == pytest.approx(50.0)
    assert window.take(1060.5) == 0.0  # the next window starts here
    assert window.state(1061.0).remaining == 19


@pytest.mark.parametrize("latency_ms", [10, 50])
def test_the_slow_start_does_not_overshoot_a_fixed_window(
    start_gateway: Start, latency_ms: float
) -> None:
    """20 a fixed 3 s window, 429s with only ``llm_provider-retry-after``, concurrency 32,
    quick answers: the slow start spreads its sends over each round trip, so few go out
    between the budget running out and the first 429 coming back: at most 5 429s."""
    gw = start_gateway(
        model_rpm={"model-a": 400},
        rate_limit_window_s=3.0,
        rate_limit_retry_after_s=3.0,
        ratelimit_dialect="litellm",
        latency_ms=latency_ms,
        latency_sigma=0.3,
    )
    run_job(gw, 30, models=["model-a"], limits={"concurrency": 32})
    assert gw.gateway.stats.rate_limited <= 5
