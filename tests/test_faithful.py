"""Issue 17: what only a real gateway showed, now held against the built-in one over a socket.

Each test is named after its finding: 2 an empty answer is never ok; 3 a
model the gateway does not know stops that model; 5 request ids from every
header; 6 one finish-reason vocabulary; 7 one model through two formats, or
streamed and not, in one job (the README's example). Findings 1, 4, 8 and 9
have their tests in test_client.py, test_terminal.py, test_schema.py and
test_openai_sdk.py; the documented bodies in test_wire_fixtures.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import invoke, job_dict, make_prompts, write_job

from batchrun.config import load_job
from batchrun.errors import JobError
from batchrun.formats.base import REQUEST_ID_HEADERS, reply_of
from batchrun.gateway import GatewayThread

REPO = Path(__file__).resolve().parent.parent
MAX_RETRIES = 2


def run(gw: GatewayThread, count: int = 3, *args: str, **overrides: object) -> pl.DataFrame:
    make_prompts(Path("prompts.parquet"), count)
    limits = {"concurrency": 2, "max_retries": MAX_RETRIES, "backoff_base_s": 0.001}
    limits.update(overrides.pop("limits", {}))  # type: ignore[call-overload]
    write_job(Path("job.yaml"), job_dict(gw.url, limits=limits, **overrides))
    invoke("run", "job.yaml", *args)
    return pl.read_parquet("out/results.parquet")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_finding2_an_empty_answer_is_retried_never_kept(
    start_gateway: Callable[..., GatewayThread], stream: bool
) -> None:
    """A finished answer with no content, tool call, refusal nor usage is ``empty_answer``.

    Before: streamed, it was an ok row with an empty response and null tokens.
    """
    gw = start_gateway(model_scenarios={"model-a": "S22b"}, stream_chunk_ms=1)
    frame = run(gw, 3, models=["model-a"], stream=stream)
    assert set(frame["status"]) == {"error"}
    assert set(frame["error_type"]) == {"empty_answer"}
    assert set(frame["attempts"]) == {MAX_RETRIES + 1}
    assert gw.gateway.stats.requests == 3 * (MAX_RETRIES + 1)


def test_finding2_an_empty_answer_that_clears_ends_ok(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """Empty answers now and then are retried until the real answer comes."""
    gw = start_gateway(fault_rates={"S22b": 0.4}, seed=3, stream_chunk_ms=1)
    frame = run(gw, 10, models=["model-a"], stream=True, limits={"max_retries": 12})
    assert set(frame["status"]) == {"ok"}
    assert frame["response"].str.len_chars().min() > 0  # type: ignore[operator]
    assert frame["attempts"].sum() == gw.gateway.stats.requests > 10


def test_finding3_invalid_model_name_stops_the_model(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """LiteLLM's 400 "Invalid model name" confirms three times, then stops that model only.

    Before: a ``bad_request`` for each row, one failed request per row.
    """
    gw = start_gateway(model_scenarios={"model-a": "E400"})
    frame = run(gw, 20, "--no-model-check", limits={"concurrency": 4, "backoff_base_s": 0.001})
    assert gw.gateway.stats.by_model["model-a"] == 3
    a = frame.filter(pl.col("model") == "model-a")
    assert a.height == 20 and set(a["error_type"]) == {"model_unavailable"}
    assert "Invalid model name" in a["error_message"].to_list()[0]
    assert set(frame.filter(pl.col("model") == "b")["status"]) == {"ok"}


@pytest.mark.parametrize("header", REQUEST_ID_HEADERS)
def test_finding5_the_request_id_is_read_from_every_gateway_header(header: str) -> None:
    """Whichever header the gateway uses, in any case, its id lands in gateway_request_id."""
    assert reply_of(200, {header.upper(): "id-1"}, 0.1).gateway_request_id == "id-1"


def test_finding5_the_gateways_own_id_comes_first_and_cf_ray_last() -> None:
    """A gateway's id beats the upstream's it passes through; Cloudflare's ray is the fallback."""
    both = {"x-request-id": "req_upstream", "X-Oneapi-Request-Id": "gw-1", "cf-ray": "8f-LHR"}
    assert reply_of(200, both, 0.1).gateway_request_id == "gw-1"
    litellm = {"x-litellm-call-id": "call-1", "x-request-id": "req_upstream"}
    assert reply_of(200, litellm, 0.1).gateway_request_id == "call-1"
    assert reply_of(200, {"cf-ray": "8f-LHR"}, 0.1).gateway_request_id == "8f-LHR"


def test_finding5_the_upstream_model_litellm_names_is_kept() -> None:
    """``x-litellm-model-name`` goes to upstream_model; without it, null."""
    named = {"x-litellm-model-name": "openai/gpt-4o-mini-2024-07-18"}
    assert reply_of(200, named, 0.1).upstream_model == "openai/gpt-4o-mini-2024-07-18"
    assert reply_of(200, {}, 0.1).upstream_model is None


def readme_models() -> list[dict[str, object]]:
    """The README's "one model, three ways" example, as written there."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```yaml\n(models:[^\n]*one model, three ways.*?)```", text, re.DOTALL)
    assert block, "the README lost its example of one model through two formats"
    models: list[dict[str, object]] = yaml.safe_load(block.group(1))["models"]
    return models


def test_finding7_the_readme_example_runs_on_the_built_in_gateway() -> None:
    """One model through chat and responses, and streamed, in one job: three named result sets.

    Before: ``validate`` refused it ("models[1] sends exactly what models[0] sends").
    """
    models = readme_models()
    assert {m.get("api", "chat") for m in models} >= {"chat", "responses"}
    assert {bool(m.get("stream")) for m in models} == {True, False}
    make_prompts(Path("prompts.parquet"), 4)
    job = job_dict("http://unused", provider="mock", models=models)
    write_job(Path("job.yaml"), job)
    result = invoke("run", "job.yaml")
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet("out/results.parquet")
    names = [str(m["alias"]) for m in models]
    assert sorted(set(frame["model"])) == sorted(names)
    assert set(frame["status"]) == {"ok"} and frame.height == 4 * len(models)
    assert set(frame["model_id"]) == {"gpt-4o-mini"}
    streamed = frame.filter(pl.col("model") == "mini-stream")
    assert streamed["ttft_s"].null_count() == 0
    assert set(frame["finish_reason"]) == {"stop"}


def test_finding7_one_name_twice_asks_for_an_alias(tmp_path: Path) -> None:
    """Two entries named alike are refused with the way out: an alias."""
    make_prompts(Path("prompts.parquet"))
    job = job_dict("http://unused", provider="mock", models=["m", {"id": "m", "api": "responses"}])
    write_job(Path("job.yaml"), job)
    with pytest.raises(JobError, match=r"job.yaml:\d+: models: models\[1\] is named 'm'.*alias"):
        load_job("job.yaml")


def test_finding7_what_sends_the_same_is_still_refused_at_its_line() -> None:
    """An entry that repeats another's id, params, api and streaming is named at its line."""
    make_prompts(Path("prompts.parquet"))
    models = [{"id": "m", "alias": "x"}, {"id": "m", "alias": "y", "api": "chat"}]
    write_job(Path("job.yaml"), job_dict("http://unused", provider="mock", models=models))
    with pytest.raises(JobError) as caught:
        load_job("job.yaml")
    line = Path("job.yaml").read_text().splitlines().index("- id: m", 10) + 1
    assert str(caught.value).startswith(f"job.yaml:{line}: models[1] sends exactly")


def test_finding6_finish_reason_is_one_vocabulary_across_formats() -> None:
    """chat, responses, messages and gemini all finish on ``stop``; their own words are kept."""
    make_prompts(Path("prompts.parquet"), 2)
    models = [
        {"id": "gpt-4o-mini", "alias": f"via-{api}", "api": api}
        for api in ("chat", "responses", "messages", "gemini")
    ]
    write_job(Path("job.yaml"), job_dict("http://unused", provider="mock", models=models))
    result = invoke("run", "job.yaml")
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet("out/results.parquet")
    assert set(frame["finish_reason"]) == {"stop"}
    raw = dict(frame.select("model", "finish_reason_raw").unique().iter_rows())
    assert raw == {
        "via-chat": "stop",
        "via-responses": "completed",
        "via-messages": "end_turn",
        "via-gemini": "STOP",
    }


def test_results_written_before_the_new_columns_still_resume() -> None:
    """An output without finish_reason_raw and upstream_model (an older batchrun's) is resumed."""
    make_prompts(Path("prompts.parquet"), 4)
    write_job(Path("job.yaml"), job_dict("http://unused", provider="mock", models=["gpt-4o-mini"]))
    assert invoke("run", "job.yaml").exit_code == 0
    older = pl.read_parquet("out/results.parquet").drop("finish_reason_raw", "upstream_model")
    older.write_parquet("out/results.parquet")
    make_prompts(Path("prompts.parquet"), 6)
    result = invoke("run", "job.yaml")
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet("out/results.parquet")
    assert frame.height == 6 and set(frame["status"]) == {"ok"}
    assert frame["finish_reason_raw"].null_count() == 4
