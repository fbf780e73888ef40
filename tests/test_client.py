"""The client through its transport seam: parsing and classification on a MockTransport,
headers, redirects and aiohttp's errors on real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from batchrun.client import GatewayClient
from batchrun.config import Job
from batchrun.errors import (
    ConnectionFailure,
    FatalRequestError,
    ModelUnavailable,
    RateLimited,
    RequestError,
    RowError,
    ServerError,
    StreamCut,
    TimeoutFailure,
)
from batchrun.formats import FORMATS, Api
from batchrun.formats.base import reply_of
from batchrun.plan import plan_model
from batchrun.record import Answer, Request
from batchrun.transport import HttpRequest, HttpResponse, MockTransport, chunks_of

URL = "https://gw.example/v1"
KEY = "sk-clientTESTkey123456"


def request(
    api: Api = "chat", stream: bool = False, params: dict[str, Any] | None = None
) -> Request:
    spec = Job.model_validate(
        {
            "name": "t",
            "provider": "mock",
            "input": {"path": "x"},
            "prompt": {"user": "q"},
            "models": ["gpt-4o-mini"],
            "output": {"path": "o.parquet"},
        }
    ).models[0]
    model = plan_model(0, spec, params or {}, stream, api)
    return Request(
        key="k",
        row=0,
        prompt_id="p",
        model=model,
        sample=0,
        body=model.body(b'[{"role":"user","content":"hi"}]'),
        estimated_tokens=10,
    )


def complete(
    transport: MockTransport, req: Request | None = None, key: str | None = KEY, **options: Any
) -> Answer:
    async def go() -> Answer:
        async with GatewayClient(URL, key, transport=transport, **options) as client:
            return await client.complete(req or request())

    return asyncio.run(go())


def send(
    status: int = 200,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    req: Request | None = None,
) -> Answer:
    payload = raw if raw is not None else json.dumps(body).encode()
    return complete(MockTransport(lambda _: HttpResponse(status, headers or {}, payload)), req)


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
    assert (got.response, got.finish_reason, got.served_model, got.response_id) == (
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


def test_request_goes_to_the_format_path_with_its_key_headers() -> None:
    """The client asks the registry: each format's URL, body and key headers go to the transport."""
    for api, path, key_header in [
        ("chat", "chat/completions", None),
        ("messages", "messages", "x-api-key"),
        ("gemini", "../v1beta/models/gpt-4o-mini:generateContent", "x-goog-api-key"),
    ]:
        transport = MockTransport(lambda _: HttpResponse(500, {}, b""))
        with pytest.raises(ServerError):
            complete(transport, request(api))  # type: ignore[arg-type]
        sent = transport.requests[0]
        assert sent.url == aiohttp.client.URL(URL + "/").join(aiohttp.client.URL(path))
        assert sent.method == "POST" and sent.body == request(api).body  # type: ignore[arg-type]
        assert sent.headers["Authorization"] == f"Bearer {KEY}"
        if key_header:
            assert sent.headers[key_header] == KEY


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
    from batchrun.classify import retry_after_seconds

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


def test_error_text_is_redacted_before_it_is_cut() -> None:
    """Issue 15: a key that straddles the 500-character cut leaves no part of itself behind."""
    key = "PLAINsecretValue0123456789"  # not key-shaped: only the known secret can mask it
    for offset in (460, 465, 470):  # the JSON around the message puts the key across 500
        body = json.dumps(err(500, {"message": "x" * offset + key})).encode()
        with pytest.raises(ServerError) as info:
            complete(MockTransport(lambda _, b=body: HttpResponse(500, {}, b)), key=key)
        assert key[:6] not in info.value.message, offset


def test_responses_error_null_is_ok() -> None:
    """Issue 17: a Responses body with "error": null (the published schema) is an answer."""
    body = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}],
        "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
    }
    got = send(200, body, req=request("responses"))
    assert (got.response, got.finish_reason, got.total_tokens) == ("Hi", "stop", 4)


def test_stream_through_the_seam() -> None:
    """A streamed chat answer is assembled from the transport's chunks, split anywhere."""
    events = [
        {"id": "c", "model": "m", "choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 2}},
    ]
    wire = (
        b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n"
    )
    parts = [wire[i : i + 7] for i in range(0, len(wire), 7)]
    headers = {"Content-Type": "text/event-stream"}
    transport = MockTransport(lambda _: HttpResponse(200, headers, chunks=chunks_of(parts)))
    got = complete(transport, request(stream=True))
    assert (got.response, got.finish_reason, got.prompt_tokens) == ("Hello", "stop", 2)
    assert got.ttft_s is not None and transport.requests[0].stream


def test_cut_stream_says_how_far_it_got() -> None:
    """A cut the transport reports mid-stream is a StreamCut that counts the chunks read."""

    async def cut() -> AsyncIterator[bytes]:
        yield b'data: {"choices":[{"delta":{"content":"a"}}]}\n'
        raise StreamCut("the stream was cut (reset)", http_status=200)

    headers = {"Content-Type": "text/event-stream"}
    transport = MockTransport(lambda _: HttpResponse(200, headers, chunks=cut()))
    with pytest.raises(StreamCut) as info:
        complete(transport, request(stream=True))
    assert info.value.message == "the stream was cut (reset) after 1 chunks"


def test_parse_pure_function() -> None:
    """The parser works on a decoded body alone (no client, no transport)."""
    got = FORMATS["chat"].answer(OK_BODY, reply_of(200, {}, 0.5), b"", [])
    assert got.latency_s == 0.5 and got.response == "Paris."


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def served(handler: Handler) -> AsyncIterator[str]:
    """An aiohttp server on 127.0.0.1 answering every path with ``handler``; yields its URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def test_bearer_header_sent() -> None:
    """The key goes in an Authorization: Bearer header, with Accept-Language: en."""
    seen: list[dict[str, str]] = []

    async def answer(http: web.Request) -> web.Response:
        seen.append(dict(http.headers))
        return web.json_response(OK_BODY)

    async def go() -> None:
        async with served(answer) as url, GatewayClient(url, KEY) as client:
            await client.complete(request())

    asyncio.run(go())
    assert seen[0]["Authorization"] == f"Bearer {KEY}"
    assert seen[0]["Accept-Language"] == "en"


@pytest.mark.parametrize("api", ["chat", "messages", "gemini"])
def test_cross_origin_redirect_drops_every_credential_header(api: Api) -> None:
    """Issue 15: a 307 to another origin carries no key in any format's header, no extra header."""
    seen: list[dict[str, str]] = []
    bodies: list[bytes] = []

    async def elsewhere(http: web.Request) -> web.Response:
        seen.append(dict(http.headers))
        bodies.append(await http.read())
        return web.json_response({"error": {"message": "no"}}, status=400)

    async def go() -> None:
        async with served(elsewhere) as target:

            async def redirect(http: web.Request) -> web.Response:
                raise web.HTTPTemporaryRedirect(target + "/landing")

            async with served(redirect) as url:
                headers = {"X-Tenant-Secret": "tenant-secret-value"}
                async with GatewayClient(url, KEY, extra_headers=headers) as client:
                    with pytest.raises(RowError):
                        await client.complete(request(api))

    asyncio.run(go())
    assert len(seen) == 1 and bodies == [request(api).body]
    leaked = {name: value for name, value in seen[0].items() if KEY in value or "secret" in value}
    assert leaked == {}
    lowered = {name.lower() for name in seen[0]}
    assert not lowered & {"authorization", "x-api-key", "x-goog-api-key", "x-tenant-secret"}


def test_same_origin_redirect_keeps_the_key() -> None:
    """A redirect within the gateway's own origin still carries the key."""
    seen: list[str | None] = []

    async def handler(http: web.Request) -> web.Response:
        if http.path != "/landing":
            raise web.HTTPTemporaryRedirect("/landing")
        seen.append(http.headers.get("Authorization"))
        return web.json_response(OK_BODY)

    async def go() -> Answer:
        async with served(handler) as url, GatewayClient(url, KEY) as client:
            return await client.complete(request())

    assert asyncio.run(go()).response == "Paris." and seen == [f"Bearer {KEY}"]


def test_connection_error_is_translated() -> None:
    """aiohttp's exceptions stop at the transport: a refused connection is ConnectionFailure."""

    async def never(http: web.Request) -> web.Response:
        raise AssertionError("not reached")

    async def go() -> None:
        async with served(never) as url:
            pass  # the server is gone: its port now refuses
        async with GatewayClient(url, KEY) as client:
            await client.complete(request())

    with pytest.raises(ConnectionFailure) as info:
        asyncio.run(go())
    assert "connection failed" in info.value.message


def test_timeout_is_translated() -> None:
    """No answer within timeout_s becomes TimeoutFailure, which is retryable."""

    async def slow(http: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response(OK_BODY)

    async def go() -> None:
        async with served(slow) as url, GatewayClient(url, KEY, timeout_s=0.1) as client:
            await client.complete(request())

    with pytest.raises(TimeoutFailure):
        asyncio.run(go())


def test_get_json_goes_through_the_transport() -> None:
    """get_json sends the key and the given headers, and returns status and JSON."""
    transport = MockTransport(lambda _: HttpResponse(200, {}, b'{"data": []}'))

    async def go() -> tuple[int, Any]:
        async with GatewayClient(URL, KEY, transport=transport) as client:
            return await client.get_json("../api/user/self", headers={"New-Api-User": "1"})

    assert asyncio.run(go()) == (200, {"data": []})
    sent: HttpRequest = transport.requests[0]
    assert (sent.method, str(sent.url)) == ("GET", "https://gw.example/api/user/self")
    assert sent.headers == {"Authorization": f"Bearer {KEY}", "New-Api-User": "1"}
