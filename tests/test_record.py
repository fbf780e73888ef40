"""The records: the Parquet schema pinned to Result, answers built by keyword, rows built once."""

from __future__ import annotations

import types
import typing
from typing import Any

import polars as pl
import pytest

from batchrun.config import Job
from batchrun.plan import plan_model
from batchrun.record import ANSWER_COLUMNS, RESULT_SCHEMA, Answer, Request, Result

# How a Result field's type becomes a column type; the overrides are the columns that are
# narrower or richer than their Python type says.
DTYPES: dict[Any, pl.DataType] = {
    str: pl.String(),
    int: pl.Int64(),
    float: pl.Float64(),
    bool: pl.Boolean(),
}
OVERRIDES: dict[str, pl.DataType] = {
    "sample": pl.Int32(),
    "http_status": pl.Int32(),
    "attempts": pl.Int32(),
    "started_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"),
    "submitted_at": pl.Datetime("us", "UTC"),
    "embedding": pl.List(pl.Float32()),
    "artifact_paths": pl.List(pl.String()),
    "ranking": pl.List(pl.Int32()),
    "relevance_scores": pl.List(pl.Float64()),
}
RUN_COLUMNS = {"run_id": pl.String(), "job": pl.String()}


def _dtype(name: str, hint: Any) -> pl.DataType:
    if name in OVERRIDES:
        return OVERRIDES[name]
    if isinstance(hint, types.UnionType):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return DTYPES[hint]


def test_result_schema_is_result_fields() -> None:
    """RESULT_SCHEMA has a column for each Result field, typed from its annotation, and no more."""
    hints = typing.get_type_hints(Result)
    derived = {**RUN_COLUMNS, **{name: _dtype(name, hints[name]) for name in Result._fields}}
    assert set(RESULT_SCHEMA) == set(derived)
    assert {name: RESULT_SCHEMA[name] for name in derived} == derived


def _answer(**overrides: Any) -> Answer:
    fields: dict[str, Any] = {
        "response": "Paris.",
        "reasoning": "think",
        "finish_reason": "stop",
        "prompt_tokens": 14,
        "completion_tokens": 10,
        "total_tokens": 24,
        "cached_tokens": 5,
        "reasoning_tokens": 2,
        "latency_s": 0.75,
        "ttft_s": 0.25,
        "time_to_last_token_s": 0.5,
        "tool_calls": "[]",
        "embedding": [0.5],
        "http_status": 200,
        "response_id": "chatcmpl-1",
        "served_model": "gpt-x",
        "gateway_request_id": "rid",
        "ratelimit": None,
    }
    return Answer(**{**fields, **overrides})


def test_answer_is_built_by_keyword_only() -> None:
    """Answer refuses positional arguments, so two str | None neighbours cannot be swapped."""
    with pytest.raises(TypeError):
        Answer("Paris.", "stop")  # type: ignore[misc]


def _request() -> Request:
    spec = Job.model_validate(
        {
            "name": "t",
            "provider": "mock",
            "input": {"path": "x"},
            "prompt": {"user": "q"},
            "models": [{"id": "gpt-4o-mini", "alias": "mini"}],
            "output": {"path": "o.parquet"},
        }
    ).models[0]
    model = plan_model(0, spec, {})
    return Request("key-1", 3, "p3", model, 1, b"{}", 10)


def test_result_ok_copies_every_answer_column() -> None:
    """Result.ok takes each answer field that is a column under its own name, and the request's."""
    answer = _answer()
    row = Result.ok(_request(), answer, attempts=2, started=100.0, parsed="{}", parsed_valid=True)
    for name in ANSWER_COLUMNS:
        assert getattr(row, name) == getattr(answer, name), name
    assert (row.prompt_id, row.model, row.model_id, row.sample, row.request_key) == (
        "p3",
        "mini",
        "gpt-4o-mini",
        1,
        "key-1",
    )
    assert (row.status, row.attempts, row.started_at, row.parsed, row.parsed_valid) == (
        "ok",
        2,
        100.0,
        "{}",
        True,
    )
    assert row.output_tokens_per_s == pytest.approx(40.0)
    assert (row.error_type, row.error_message, row.cost_usd) == (None, None, None)
    assert set(ANSWER_COLUMNS) == set(Answer.__dataclass_fields__) - {
        "ratelimit",
        "blobs",
    }


def test_result_failed_keeps_the_error() -> None:
    """Result.failed is an error row with the request's identity and no answer fields."""
    row = Result.failed(
        _request(), error_type="timeout", message="slow", http_status=None, attempts=3, started=1.0
    )
    assert (row.status, row.error_type, row.error_message, row.attempts) == (
        "error",
        "timeout",
        "slow",
        3,
    )
    assert row.response is None and row.request_key == "key-1" and row.finished_at >= 1.0
