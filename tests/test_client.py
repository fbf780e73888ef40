"""The client's parsing and classification, with aioresponses standing in for the gateway."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aioresponses import aioresponses
from aioresponses_compat import CompatResponse

from batchrun.client import Completion, GatewayClient, parse_chat_response, retry_after_seconds
from batchrun.config import Job
from batchrun.errors import (
    ConnectionFailure,
    FatalRequestError,
    ModelUnavailable,
    RateLimited,
    RequestError,
    RowError,
    ServerError,
)
from batchrun.plan import Request, plan_model

URL = "https://gw.example/v1"
KEY = "sk-clientTESTkey123456"


def request() -> Request:
    model = plan_model(
        0,
        Job.model_validate(
            {
                "name": "t",
                "provider": "mock",
                "input": {"path": "x"},
                "prompt": {"user": "q"},
                "models": ["gpt-4o-mini"],
                "output": {"path": "o.parquet"},
            }
        ).models[0],
        {},
    )
    return Request(
        key="k",
        row=0,
        prompt_id="p",
        model=model,
        sample=0,
        body=model.body_head + b'[{"role":"user","content":"hi"}]' + model.body_tail,
        estimated_tokens=10,
    )


def send(
    status: int = 200,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    exception: Exception | None = None,
) -> Completion:
    async def go() -> Completion:
        with aioresponses() as mocked:
            payload = raw if raw is not None else json.dumps(body).encode()
            mocked.post(
                f"{URL}/chat/completions",
                status=status,
                body=payload,
                headers=headers,
                exception=exception,
                response_class=CompatResponse,
            )
            async with GatewayClient(URL, KEY) as client:
                return await client.complete(request())

    return asyncio.run(go())


OK_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
    ],
    "usage": {
        "prompt_tokens": 14,
        "completion_tokens": 3,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 5},
        "completion_tokens_details": {"reasoning_tokens": 2},
    },
}


def test_ok_response_fields() -> None:
    """Text, finish reason, usage details, served model and response id are parsed."""
    got = send(200, OK_BODY, headers={"X-Oneapi-Request-Id": "rid-1"})
    assert (got.text, got.finish_reason, got.served_model, got.response_id) == (
        "Paris.",
        "stop",
        "gpt-4o-mini-2024-07-18",
        "chatcmpl-1",
    )
    assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == (14, 3, 17)
    assert (got.cached_tokens, got.reasoning_tokens) == (5, 2)
    assert got.gateway_request_id == "rid-1"
    assert got.latency_s >= 0


def test_missing_usage_and_null_finish() -> None:
    """Missing usage gives nulls, not zeros; a null finish reason is kept as null."""
    body = {"choices": [{"message": {"content": "x"}, "finish_reason": None}]}
    got = send(200, body)
    assert got.prompt_tokens is None and got.total_tokens is None
    assert got.finish_reason is None


def test_reasoning_content_kept() -> None:
    """reasoning_content goes to its own field."""
    body = {
        "choices": [
            {"message": {"content": "", "reasoning_content": "think"}, "finish_reason": "stop"}
        ]
    }
    assert send(200, body).reasoning == "think"


def test_bearer_header_sent() -> None:
    """The key goes in an Authorization: Bearer header, with Accept-Language: en."""

    async def go() -> dict[str, str]:
        with aioresponses() as mocked:
            mocked.post(
                f"{URL}/chat/completions",
                status=200,
                payload=OK_BODY,
                response_class=CompatResponse,
            )
            async with GatewayClient(URL, KEY) as client:
                await client.complete(request())
            call = next(iter(mocked.requests.values()))[0]
            session_headers = client._headers
            return {**session_headers, **(call.kwargs.get("headers") or {})}

    headers = asyncio.run(go())
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["Accept-Language"] == "en"


def err(status: int, error: Any) -> dict[str, Any]:
    return {"error": error}


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, None, RateLimited),
        (
            429,
            err(
                429,
                {
                    "message": "当前分组上游负载已饱和",
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                },
            ),
            RateLimited,
        ),
        (401, err(401, {"message": "Invalid token", "type": "new_api_error"}), FatalRequestError),
        (
            403,
            err(
                403,
                {
                    "message": "user quota is not enough",
                    "type": "one_api_error",
                    "code": "insufficient_user_quota",
                },
            ),
            FatalRequestError,
        ),
        (
            503,
            err(
                503,
                {"message": "当前分组 default 下对于模型 x 无可用渠道", "type": "one_api_error"},
            ),
            ModelUnavailable,
        ),
        (
            503,
            err(503, {"message": "No available channel for model x", "code": "model_not_found"}),
            ModelUnavailable,
        ),
        (
            500,
            err(500, {"message": "ratio not set", "code": "model_price_error"}),
            ModelUnavailable,
        ),
        (500, err(500, {"message": "请求上游地址失败", "code": "do_request_failed"}), ServerError),
        (
            502,
            err(502, {"message": "bad", "code": "bad_response_status_code", "param": "502"}),
            ServerError,
        ),
        (500, err(500, {"message": "bad body", "code": "invalid_request"}), RowError),
        (400, err(400, {"message": "context", "code": "context_length_exceeded"}), RowError),
        (404, err(404, {"message": "Invalid URL", "code": ""}), RowError),
        (413, err(413, {"message": "too large", "code": "read_request_body_failed"}), RowError),
        (408, err(408, {"message": "timeout"}), ServerError),
        (409, err(409, {"message": "conflict"}), ServerError),
        (
            200,
            err(200, {"message": "No candidates returned", "type": "server_error", "code": 500}),
            ServerError,
        ),
        (200, {"object": "chat.completion", "choices": []}, ServerError),
    ],
)
def test_classification(status: int, body: Any, kind: type[RequestError]) -> None:
    """Each gateway failure becomes the error class that decides what the runner does."""
    raw = b"" if body is None else json.dumps(body).encode()
    with pytest.raises(kind) as info:
        send(status, raw=raw)
    assert info.value.http_status == status


@pytest.mark.parametrize("status", [502, 504, 524, 520])
def test_html_pages_are_server_errors(status: int) -> None:
    """A proxy's HTML error page is a retryable server error, its text kept."""
    page = f"<html><head><title>{status} Bad Gateway</title></head><body>nginx</body></html>"
    with pytest.raises(ServerError) as info:
        send(status, raw=page.encode())
    assert f"{status} Bad Gateway" in info.value.message


def test_error_json_with_event_stream_type() -> None:
    """An error body is parsed by content, whatever its Content-Type says."""
    body = json.dumps(err(503, {"message": "upstream", "code": "bad_response_status_code"}))
    with pytest.raises(ServerError) as info:
        send(503, raw=body.encode(), headers={"Content-Type": "text/event-stream"})
    assert info.value.code == "bad_response_status_code"


def test_numeric_and_null_codes() -> None:
    """Error codes may be integers or null."""
    with pytest.raises(ServerError) as info:
        send(200, raw=json.dumps(err(200, {"message": "x", "code": 500})).encode())
    assert info.value.code == "500"
    with pytest.raises(RateLimited) as limited:
        send(429, raw=json.dumps(err(429, {"message": "x", "code": None})).encode())
    assert limited.value.code is None


def test_retry_after_headers() -> None:
    """retry-after-ms wins over Retry-After; both are capped; junk is ignored."""
    assert retry_after_seconds({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    assert retry_after_seconds({"Retry-After": "2"}) == 2.0
    assert retry_after_seconds({"Retry-After": "100000"}) == 120.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    with pytest.raises(RateLimited) as info:
        send(429, raw=b"", headers={"Retry-After": "3"})
    assert info.value.retry_after == 3.0


def test_key_echoed_in_error_is_redacted() -> None:
    """A gateway that echoes the key or an Authorization header does not leak it."""
    body = json.dumps(err(401, {"message": f"bad key {KEY}; Authorization: Bearer {KEY}"}))
    with pytest.raises(FatalRequestError) as info:
        send(401, raw=body.encode())
    assert KEY not in info.value.message
    assert "[redacted]" in info.value.message


def test_connection_error_is_translated() -> None:
    """aiohttp's exceptions stop at the client: they become ConnectionFailure."""
    import aiohttp

    with pytest.raises(ConnectionFailure):
        send(exception=aiohttp.ClientConnectionError("refused"))


def test_timeout_is_translated() -> None:
    """A timeout becomes TimeoutFailure, which is retryable."""
    from batchrun.errors import TimeoutFailure

    with pytest.raises(TimeoutFailure):
        send(exception=TimeoutError())


def test_parse_pure_function() -> None:
    """The parser works on bytes alone (no session needed)."""
    got = parse_chat_response(200, {}, json.dumps(OK_BODY).encode(), 0.5)
    assert got.latency_s == 0.5 and got.text == "Paris."
