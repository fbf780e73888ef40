"""Answers as providers and gateways document them, read by the client: success, error, stream.

Each file in ``tests/fixtures/wire/`` holds one answer as it comes off the
wire (status, headers, and a JSON body or the events of a stream), written
from the published examples of OpenAI (chat, responses, embeddings),
Anthropic (messages and its error shape), Gemini (generateContent),
one-api/new-api (GATEWAYS.md) and LiteLLM proxy. Nullable fields are left
null where the published schemas allow it. Every file is parsed here by the
real client, through its transport seam, and must give what is expected.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from batchrun.client import GatewayClient
from batchrun.config import Job
from batchrun.errors import (
    EmptyAnswer,
    FatalRequestError,
    ModelUnavailable,
    RateLimited,
    RequestError,
    RowError,
    ServerError,
    StreamCut,
)
from batchrun.formats import Api
from batchrun.plan import plan_model
from batchrun.record import Answer, Request
from batchrun.transport import HttpResponse, MockTransport, chunks_of

WIRE = Path(__file__).parent / "fixtures" / "wire"
KEY = "sk-wireTESTkey0123456789"

# What each fixture must parse into: the Answer fields named, or the error class raised.
OK: dict[str, dict[str, Any]] = {
    "openai_chat": {
        "response": "The image shows a wooden boardwalk path running through a lush green field.",
        "finish_reason": "stop",
        "finish_reason_raw": "stop",
        "prompt_tokens": 1117,
        "completion_tokens": 46,
        "total_tokens": 1163,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "served_model": "gpt-4o-2024-08-06",
        "gateway_request_id": "req_6c1f0e0d2e3b4a59",
    },
    "openai_chat_tool_calls": {
        "response": None,
        "finish_reason": "tool_calls",
        "total_tokens": 99,
    },
    "openai_chat_refusal": {
        "response": "I'm sorry, I cannot assist with that request.",
        "finish_reason": "content_filter",
        "finish_reason_raw": "stop",
    },
    "openai_responses": {
        "response": "In a peaceful grove beneath a silver moon, a unicorn named Lumina discovered "
        "a hidden pool.",
        "finish_reason": "stop",
        "finish_reason_raw": "completed",
        "prompt_tokens": 36,
        "completion_tokens": 87,
        "total_tokens": 123,
        "gateway_request_id": "req_resp_1",
    },
    "openai_responses_incomplete": {
        "response": None,
        "finish_reason": "length",
        "finish_reason_raw": "max_output_tokens",
        "reasoning_tokens": 200,
    },
    "openai_embeddings": {
        "embedding": [0.0023064255, -0.009327292, -0.0028842222],
        "finish_reason": "stop",
        "finish_reason_raw": None,
        "prompt_tokens": 8,
        "served_model": "text-embedding-3-small",
    },
    "anthropic_message": {
        "response": "Hi! My name is Claude.",
        "finish_reason": "stop",
        "finish_reason_raw": "end_turn",
        "prompt_tokens": 2095,
        "completion_tokens": 503,
        "total_tokens": 2598,
        "cached_tokens": None,
        "gateway_request_id": "req_018EeWyXxfu5pfWkrYcMdjWG",
    },
    "anthropic_tool_use": {
        "response": "I'll check the weather.",
        "finish_reason": "tool_calls",
        "finish_reason_raw": "tool_use",
        "prompt_tokens": 150,
        "cached_tokens": 30,
    },
    "gemini_generate_content": {
        "response": "AI learns patterns from data to make predictions.",
        "finish_reason": "stop",
        "finish_reason_raw": "STOP",
        "prompt_tokens": 8,
        "completion_tokens": 10,
        "total_tokens": 45,
        "reasoning_tokens": 27,
        "response_id": "Wl8OaPKmGZ2d1dkP2q6xuQw",
        "gateway_request_id": "goog-req-1",
    },
    "gemini_function_call": {
        "response": "",
        "finish_reason": "tool_calls",
        "finish_reason_raw": "STOP",
    },
    "gemini_blocked_prompt": {
        "response": "",
        "finish_reason": "content_filter",
        "finish_reason_raw": "SAFETY",
        "prompt_tokens": 12,
    },
    "newapi_converted_claude": {
        "finish_reason": "tool_calls",
        "finish_reason_raw": "tool_use",
        "prompt_tokens": 50,
        "gateway_request_id": "20250423020142736330894cLaUdE1",
    },
    "litellm_chat": {
        "response": "Hello!",
        "served_model": "fast",
        "upstream_model": "openai/gpt-4o-mini-2024-07-18",
        "gateway_request_id": "019b2c4d-e5f6-7890-abcd-ef1234567890",
        "cached_tokens": None,
    },
    "litellm_responses_bridged": {
        "response": "Hello!",
        "finish_reason": "stop",
        "upstream_model": "gpt-4o-mini",
        "gateway_request_id": "019b2c4d-0000-7890-abcd-ef1234567890",
    },
    "openai_chat_stream": {
        "response": "Hello there",
        "finish_reason": "stop",
        "prompt_tokens": 9,
        "total_tokens": 11,
        "response_id": "chatcmpl-123",
        "gateway_request_id": "req_stream_1",
    },
    "openai_chat_stream_tool_calls": {
        "response": "",
        "finish_reason": "tool_calls",
    },
    "chat_stream_refusal": {
        "response": "I'm sorry, I cannot help with that.",
        "finish_reason": "content_filter",
        "finish_reason_raw": "stop",
    },
    "newapi_stream_claude_max_tokens": {
        "response": "A long answer",
        "finish_reason": "length",
        "finish_reason_raw": "max_tokens",
        "completion_tokens": 2,
    },
}
FAILS: dict[str, tuple[type[RequestError], str]] = {
    "openai_chat_empty": (EmptyAnswer, "empty_answer"),
    "chat_stream_empty": (EmptyAnswer, "empty_answer"),
    "openai_responses_failed": (ServerError, "server_error"),
    "openai_error_model_not_found": (ModelUnavailable, "model_unavailable"),
    "anthropic_error_overloaded": (ServerError, "server_error"),
    "anthropic_error_unknown_model": (ModelUnavailable, "model_unavailable"),
    "anthropic_error_invalid": (RowError, "bad_request"),
    "gemini_error_unknown_model": (ModelUnavailable, "model_unavailable"),
    "oneapi_no_channel": (ModelUnavailable, "model_unavailable"),
    "newapi_model_not_found": (ModelUnavailable, "model_unavailable"),
    "newapi_saturated": (RateLimited, "rate_limited"),
    "oneapi_200_error": (ServerError, "server_error"),
    "oneapi_price_error": (ModelUnavailable, "model_unavailable"),
    "oneapi_invalid_key": (FatalRequestError, "auth"),
    "litellm_invalid_model": (ModelUnavailable, "model_unavailable"),
    "litellm_invalid_model_newer": (ModelUnavailable, "model_unavailable"),
    "litellm_messages_invalid_model": (ModelUnavailable, "model_unavailable"),
    "litellm_not_found": (ModelUnavailable, "model_unavailable"),
    "litellm_rate_limited": (RateLimited, "rate_limited"),
    "litellm_bad_request": (RowError, "bad_request"),
    "newapi_stream_error": (StreamCut, "stream_cut"),
}


def load(name: str) -> dict[str, Any]:
    fixture: dict[str, Any] = json.loads((WIRE / f"{name}.json").read_text())
    return fixture


def request_for(api: Api, stream: bool) -> Request:
    spec = Job.model_validate(
        {
            "name": "t",
            "provider": "mock",
            "input": {"path": "x"},
            "prompt": {"user": "q"},
            "models": ["m"],
            "output": {"path": "o.parquet"},
        }
    ).models[0]
    model = plan_model(0, spec, {}, stream, api)
    body = model.body(b'[{"role":"user","content":"hi"}]')
    return Request("k", 0, "p", model, 0, body, 10)


def response_of(fixture: dict[str, Any]) -> HttpResponse:
    """The fixture as the real transport hands it over: headers without regard to case."""
    headers = CIMultiDict(fixture["headers"])
    if "events" not in fixture:
        return HttpResponse(fixture["status"], headers, json.dumps(fixture["body"]).encode())
    lines = [
        "data: " + (event if isinstance(event, str) else json.dumps(event)) + "\n\n"
        for event in fixture["events"]
    ]
    return HttpResponse(fixture["status"], headers, chunks=chunks_of([x.encode() for x in lines]))


def parse(name: str) -> Answer:
    fixture = load(name)
    req = request_for(fixture["api"], "events" in fixture)
    transport = MockTransport(lambda _: response_of(fixture))

    async def go() -> Answer:
        async with GatewayClient("https://gw.example/v1", KEY, transport=transport) as client:
            return await client.complete(req)

    return asyncio.run(go())


def test_every_fixture_has_an_expectation() -> None:
    """No fixture file goes unparsed, and none is expected twice."""
    names = {path.stem for path in WIRE.glob("*.json")}
    assert names == set(OK) | set(FAILS)
    assert not set(OK) & set(FAILS)


def test_every_fixture_names_its_source() -> None:
    """Each fixture says which published example or gateway behaviour it was written from."""
    for path in WIRE.glob("*.json"):
        assert load(path.stem)["source"], path.name


@pytest.mark.parametrize("name", sorted(OK))
def test_documented_answers_parse(name: str) -> None:
    """A documented successful answer gives the fields its example holds."""
    answer = parse(name)
    got = {field: getattr(answer, field) for field in OK[name]}
    assert got == OK[name]
    assert answer.http_status == 200


@pytest.mark.parametrize("name", sorted(FAILS))
def test_documented_errors_classify(name: str) -> None:
    """A documented error (or an answer with nothing in it) raises its class, never an ok row."""
    kind, error_type = FAILS[name]
    with pytest.raises(RequestError) as caught:
        parse(name)
    assert type(caught.value) is kind and caught.value.error_type == error_type
    assert KEY not in caught.value.message
