"""Batch mode's parts on their own: lines and splitting, the pending record, prices, rows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import invoke

from batchrun.batch import lines as batch_lines
from batchrun.batch.api import Listed
from batchrun.batch.lane import _match
from batchrun.batch.lines import ApiLimits, encode_line, split
from batchrun.batch.results import RowMaker, read_lines
from batchrun.config import Job, Price
from batchrun.plan import Request, build_plan
from batchrun.pricing import batch_price
from batchrun.remote_work import RemoteJob, RemoteRecord, record_path
from batchrun.templates import compile_prompt


def requests(api: str = "chat", rows: int = 5) -> list[Request]:
    job = Job.model_validate(
        {
            "name": "u",
            "provider": "mock",
            "input": {"path": "x.csv"},
            "prompt": {"user": "{{ q }}"},
            "models": ["model-a"],
            "api": api,
            "params": {"max_tokens": 8},
            "output": {"path": "o.parquet"},
        }
    )
    frame = pl.DataFrame({"_prompt_id": [f"p{i}" for i in range(rows)], "q": ["hi"] * rows})
    from batchrun.dataset import PROMPT_ID

    frame = frame.rename({"_prompt_id": PROMPT_ID})
    return list(build_plan(job, frame, compile_prompt(job.prompt)).requests())


def test_the_custom_id_is_the_request_key_within_both_apis_rules() -> None:
    """The key (32 hex) is the custom_id of both line shapes, and the body goes as sent online."""
    request = requests()[0]
    assert re.fullmatch(r"^[a-zA-Z0-9_-]{1,64}$", request.key) and len(request.key) == 32
    openai = json.loads(encode_line("openai", request))
    assert openai == {
        "custom_id": request.key,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": json.loads(request.body),
    }
    claude = requests("messages")[0]
    anthropic = json.loads(encode_line("anthropic", claude))
    assert anthropic == {"custom_id": claude.key, "params": json.loads(claude.body)}
    assert anthropic["params"]["model"] == "model-a"


def test_split_keeps_each_batch_within_batch_size_and_the_api_byte_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    many = requests(rows=10)
    assert [len(c.keys) for c in split("openai", many, batch_size=4)] == [4, 4, 2]
    line = len(encode_line("openai", many[0])) + 1
    monkeypatch.setitem(batch_lines.API_LIMITS, "openai", ApiLimits(7, 3 * line + 64))
    chunks = list(split("openai", many))
    assert [len(c.keys) for c in chunks] == [3, 3, 3, 1]
    assert all(c.size <= 3 * line for c in chunks)
    assert [k for c in chunks for k in c.keys] == [r.key for r in many]
    monkeypatch.setitem(batch_lines.API_LIMITS, "openai", ApiLimits(100, 10))
    with pytest.raises(ValueError, match="more than a batch may hold"):
        list(split("openai", many))


def test_the_pending_record_is_synced_and_renamed_into_place(tmp_path: Path) -> None:
    output = tmp_path / "out" / "r.parquet"
    record = RemoteRecord(output)
    work = RemoteJob.new("openai-batch", "model-a", ["a" * 32, "b" * 32])
    record.add(work)
    assert json.loads(record_path(output).read_text())["jobs"][0]["remote_id"] is None
    work.remote_id = "batch_1"
    record.save()
    again = RemoteRecord(output)
    assert again.jobs == [work] and again.keys({"openai-batch"}) == {"a" * 32, "b" * 32}
    assert [p.name for p in output.parent.iterdir()] == [record_path(output).name]
    record.remove(work)
    assert not record_path(output).exists()


def test_an_unconfirmed_anthropic_submission_is_matched_by_size_and_time() -> None:
    """Message Batches carry no metadata: the batch of the same size created just after."""
    work = RemoteJob.new("anthropic-batch", "claude", ["k1", "k2", "k3"])
    stamp = work.prepared_at
    listed = [
        Listed("msgbatch_old", None, stamp - 3600, 3),
        Listed("msgbatch_other_size", None, stamp + 1, 4),
        Listed("msgbatch_ours", None, stamp + 1, 3),
    ]
    found = _match(work, listed)
    assert found is not None and found.remote_id == "msgbatch_ours"
    assert _match(work, listed[:2]) is None
    openai = RemoteJob.new("openai-batch", "model-a", ["k1"])
    assert _match(openai, [Listed("batch_x", None, openai.prepared_at, 1)]) is None
    assert _match(openai, [Listed("batch_y", openai.submission, 0.0, 1)]) is not None


def test_batch_prices_default_to_half_and_honour_the_job() -> None:
    listed = Price(input=2.0, output=8.0, cached_input=1.0)
    assert batch_price(listed) == Price(input=1.0, output=4.0, cached_input=0.5)
    given = Price(input=2.0, output=8.0, batch_input=0.3, batch_output=3.0)
    halved = batch_price(given)
    assert halved is not None and (halved.input, halved.output) == (0.3, 3.0)
    assert batch_price(None) is None


def test_a_cut_results_file_is_told_from_a_whole_one() -> None:
    whole = b'{"custom_id":"a","x":1}\n{"custom_id":"b","x":2}\n'
    assert read_lines(whole) == ([{"custom_id": "a", "x": 1}, {"custom_id": "b", "x": 2}], True)
    found, complete = read_lines(whole[:30])
    assert not complete and [line["custom_id"] for line in found] == ["a"]
    assert read_lines(b"<html>oops</html>\n")[1] is False


@pytest.mark.parametrize(
    ("line", "error_type", "status"),
    [
        (
            {"response": {"status_code": 400, "body": {"error": {"message": "bad", "code": None}}}},
            "bad_request",
            400,
        ),
        (
            {"response": {"status_code": 429, "body": {"error": {"message": "slow"}}}},
            "rate_limited",
            429,
        ),
        (
            {"response": None, "error": {"code": "batch_expired", "message": "x"}},
            "batch_expired",
            None,
        ),
        (
            {"response": None, "error": {"code": "batch_failed", "message": "x"}},
            "batch_failed",
            None,
        ),
    ],
)
def test_openai_line_errors_are_classified_like_online_ones(
    line: dict[str, Any], error_type: str, status: int | None
) -> None:
    request = requests()[0]
    row = RowMaker("batch_1", 1.0, []).openai({"custom_id": request.key, **line}, request)
    assert row is not None and row.status == "error"
    assert (row.error_type, row.http_status) == (error_type, status)
    assert (row.mode, row.batch_id, row.submitted_at, row.latency_s) == (
        "batch",
        "batch_1",
        1.0,
        None,
    )


@pytest.mark.parametrize(
    ("result", "error_type"),
    [
        (
            {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "m"},
                },
            },
            "bad_request",
        ),
        (
            {
                "type": "errored",
                "error": {"type": "error", "error": {"type": "overloaded_error", "message": "m"}},
            },
            "server_error",
        ),
        ({"type": "expired"}, "batch_expired"),
    ],
)
def test_anthropic_results_are_classified_like_online_ones(
    result: dict[str, Any], error_type: str
) -> None:
    request = requests("messages")[0]
    row = RowMaker("msgbatch_1", 1.0, []).anthropic(
        {"custom_id": request.key, "result": result}, request
    )
    assert row is not None and row.error_type == error_type


def test_a_cancelled_line_gets_no_row_so_the_next_run_submits_it() -> None:
    request = requests("messages")[0]
    maker = RowMaker("b", 1.0, [])
    assert (
        maker.anthropic({"custom_id": request.key, "result": {"type": "canceled"}}, request) is None
    )
    cancelled = {"custom_id": request.key, "error": {"code": "batch_cancelled", "message": "c"}}
    assert maker.openai(cancelled, requests()[0]) is None


def test_the_gateway_command_refuses_an_unknown_batch_setting() -> None:
    result = invoke("gateway", "--port", "0", "--batches", "delay=3")
    assert result.exit_code == 2
    assert "--batches 'delay=3': expected on or one of delay_s" in result.stderr
