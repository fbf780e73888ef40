"""Streaming over a real socket: TTFT recorded, and every stream fault ends in the right status."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from conftest import invoke, job_dict, make_prompts, write_job

from batchrun.gateway import GatewayThread


def stream_run(
    start_gateway: Callable[..., GatewayThread], scenario: str | None = None, **limits: object
) -> tuple[int, pl.DataFrame, GatewayThread]:
    gw = start_gateway(
        model_scenarios={"model-a": scenario} if scenario else {},
        stream_chunk_ms=1,
        stall_s=1.0,
        latency_ms=5,
    )
    make_prompts(Path("prompts.parquet"), 3)
    write_job(
        Path("job.yaml"),
        job_dict(
            gw.url,
            models=["model-a"],
            stream=True,
            limits={"max_retries": 1, "backoff_base_s": 0.001, **limits},
        ),
    )
    code = invoke("run", "job.yaml").exit_code
    return code, pl.read_parquet("out/results.parquet"), gw


@pytest.mark.parametrize("scenario", [None, "S02b", "S03", "S04"])
def test_healthy_streams_record_ttft(
    start_gateway: Callable[..., GatewayThread], scenario: str | None
) -> None:
    """Every ok row of a streamed run has TTFT, time to last token, usage and the whole text."""
    code, frame, _ = stream_run(start_gateway, scenario)
    assert code == 0
    assert set(frame["status"]) == {"ok"}
    for column in ("ttft_s", "time_to_last_token_s", "output_tokens_per_s", "prompt_tokens"):
        assert frame[column].null_count() == 0, column
    assert (frame["ttft_s"] <= frame["time_to_last_token_s"]).all()
    assert frame.sort("prompt_id")["response"].to_list() == [
        "The answer is 1.",
        "The answer is 3.",
        "The answer is 5.",
    ]


@pytest.mark.parametrize("scenario", ["S18", "S19", "S20", "S22", "S30b"])
def test_cut_streams_are_never_ok(
    start_gateway: Callable[..., GatewayThread], scenario: str
) -> None:
    """An error event, a [DONE] without finish, a dropped connection: retried, then an error."""
    code, frame, gw = stream_run(start_gateway, scenario)
    assert code == 1
    assert set(frame["status"]) == {"error"}
    assert set(frame["error_type"]) == {"stream_cut"}
    assert frame["response"].null_count() == 3  # no half answers kept
    assert set(frame["attempts"]) == {2}
    assert gw.gateway.stats.requests == 6


def test_stall_beyond_idle_timeout_is_cut(start_gateway: Callable[..., GatewayThread]) -> None:
    """A stream silent for longer than stream_idle_timeout_s is cut and retried."""
    code, frame, _ = stream_run(start_gateway, "S21", stream_idle_timeout_s=0.3)
    assert code == 1 and set(frame["error_type"]) == {"stream_cut"}
    assert "went quiet" in frame["error_message"][0]


def test_stall_within_idle_timeout_is_fine(start_gateway: Callable[..., GatewayThread]) -> None:
    """A pause shorter than the idle timeout is waited out."""
    code, frame, _ = stream_run(start_gateway, "S21", stream_idle_timeout_s=5)
    assert code == 0 and set(frame["status"]) == {"ok"}


def test_long_lines_have_no_limit(start_gateway: Callable[..., GatewayThread]) -> None:
    """An SSE line over 64 KiB is read whole."""
    code, frame, _ = stream_run(start_gateway, "S30")
    assert code == 0
    assert all(len(text) > 100_000 for text in frame["response"])


@pytest.mark.parametrize(
    ("scenario", "finish"),
    [("S24", "max_tokens"), ("S24b", "tool_use"), ("S24d", "content_filter")],
)
def test_stream_finish_reasons(
    start_gateway: Callable[..., GatewayThread], scenario: str, finish: str
) -> None:
    """Non-OpenAI finish reasons in a stream are results, told in the one vocabulary."""
    code, frame, _ = stream_run(start_gateway, scenario)
    normal = {"max_tokens": "length", "tool_use": "tool_calls"}.get(finish, finish)
    assert code == 0 and set(frame["finish_reason"]) == {normal}
    assert set(frame["finish_reason_raw"]) == {finish}


def test_error_json_on_stream_request(start_gateway: Callable[..., GatewayThread]) -> None:
    """An error body sent as text/event-stream with a 503 is a server error, retried."""
    code, frame, _ = stream_run(start_gateway, "S23")
    assert code == 1 and set(frame["error_type"]) == {"server_error"}


def test_stream_per_model(start_gateway: Callable[..., GatewayThread]) -> None:
    """stream set on one model only: that model's rows have TTFT, the other's do not."""
    gw = start_gateway()
    make_prompts(Path("prompts.parquet"), 3)
    write_job(
        Path("job.yaml"), job_dict(gw.url, models=[{"id": "model-a", "stream": True}, "model-b"])
    )
    assert invoke("run", "job.yaml").exit_code == 0
    frame = pl.read_parquet("out/results.parquet")
    assert frame.filter(pl.col("model") == "model-a")["ttft_s"].null_count() == 0
    assert frame.filter(pl.col("model") == "model-b")["ttft_s"].null_count() == 3
