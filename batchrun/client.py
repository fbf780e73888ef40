"""The HTTP side: one aiohttp session, request bodies on the wire, responses parsed.

This is the one boundary where aiohttp's exceptions and the gateway's
answers become batchrun's own: ``GatewayClient.complete`` returns a
``Completion`` or raises a ``RequestError`` subclass chosen by
``classify_error`` (by HTTP status and error code, never by message or
type, which gateways reword freely). Parsing is defensive: an HTTP 200 with
an ``error`` body is an error, an HTML page from a proxy is a server error,
and usage fields may be missing, zero or extra.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import aiohttp
import yarl

try:
    from orjson import loads as _loads
except ImportError:  # orjson is optional: the standard parser gives the same objects
    from json import loads as _loads  # type: ignore[assignment]

from batchrun import __version__
from batchrun.deadlines import Deadlines
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
from batchrun.formats import Api, api_headers, parse_answer
from batchrun.plan import Request
from batchrun.ratelimits import RateLimitAdvice, read_advice
from batchrun.redact import redact
from batchrun.sse import StreamAssembler, StreamError, split_lines

MAX_ERROR_BODY = 500
MAX_RETRY_AFTER_S = 120.0
_NO_CHANNEL_MARKERS = ("无可用渠道", "no available channel", "failed to get available channel")
_MODEL_CODES = {"model_not_found", "model_price_error"}
_QUOTA_CODES = {"insufficient_user_quota", "pre_consume_token_quota_failed"}
_NON_RETRYABLE_5XX_CODES = {"invalid_request", "invalid_text_request"}


class Completion(NamedTuple):
    """A successful answer, reduced to what the results record."""

    text: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    response_id: str | None
    served_model: str | None
    http_status: int
    gateway_request_id: str | None
    latency_s: float
    reasoning: str | None = None
    ratelimit: RateLimitAdvice | None = None
    ttft_s: float | None = None
    last_token_s: float | None = None
    tool_calls: str | None = None
    embedding: list[float] | None = None


class Sender(Protocol):
    """What the runner needs from a client: send one request, get a completion."""

    async def complete(self, request: Request) -> Completion: ...


class GatewayClient:
    """Sends chat completions to one OpenAI-compatible base URL over one aiohttp session."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 120.0,
        idle_timeout_s: float = 60.0,
        extra_headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
    ) -> None:
        self._idle_s = idle_timeout_s
        self._base = yarl.URL(base_url.rstrip("/") + "/")
        self._url = self._base / "chat/completions"
        self._secrets = [api_key] if api_key else []
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Language": "en",
            "User-Agent": f"batchrun/{__version__}",
            **(extra_headers or {}),
        }
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = headers
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._deadlines = Deadlines(timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> GatewayClient:
        connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
        # No total timeout on the session: ``Deadlines`` bounds each answer more cheaply
        # than a timer per request. No cookies: an API key is all a gateway needs.
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout.total),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._deadlines.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._deadlines.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def complete(self, request: Request) -> Completion:
        """Send one request; return its completion or raise a classified ``RequestError``."""
        assert self._session is not None, "use GatewayClient as an async context manager"
        if request.model.stream:
            return await self._complete_stream(request)
        api = request.model.api
        if api == "chat":
            url, extra = self._url, None
        else:
            url = self._base.join(yarl.URL(request.model.path))
            extra = api_headers(api, self._secrets[0] if self._secrets else None) or None
        started = time.perf_counter()
        task = self._deadlines.arm()
        try:
            async with self._session.post(url, data=request.body, headers=extra) as response:
                body = await response.read()
                status = response.status
                headers = response.headers
        except asyncio.CancelledError:
            if not self._deadlines.expired(task):
                raise
            raise self._timed_out() from None
        except TimeoutError:
            raise self._timed_out() from None
        except aiohttp.ClientConnectionError as exc:
            raise ConnectionFailure(self._redact(f"connection failed: {exc}")) from None
        except aiohttp.ClientError as exc:
            raise ConnectionFailure(self._redact(f"HTTP client error: {exc}")) from None
        finally:
            self._deadlines.disarm(task)
        latency = time.perf_counter() - started
        if api == "chat":
            return parse_chat_response(status, headers, body, latency, self._secrets)
        return parse_other_response(api, status, headers, body, latency, self._secrets)

    async def _complete_stream(self, request: Request) -> Completion:
        """Send one streamed request; the answer counts only if a choice finished."""
        assert self._session is not None
        assembler = StreamAssembler()
        timeout = aiohttp.ClientTimeout(total=self._timeout.total, sock_read=self._idle_s)
        status = 0
        headers: Mapping[str, str] = {}
        try:
            async with self._session.post(
                self._url, data=request.body, timeout=timeout
            ) as response:
                status, headers = response.status, response.headers
                kind = response.headers.get("Content-Type", "")
                if status != 200 or "text/event-stream" not in kind:
                    body = await response.read()
                    latency = time.perf_counter() - assembler.started
                    return parse_chat_response(status, headers, body, latency, self._secrets)
                async for line in split_lines(response.content.iter_any()):
                    assembler.feed(line)
        except StreamError as exc:
            raw = json.dumps(exc.payload, ensure_ascii=False).encode()
            error = classify_error(200, headers, raw, exc.payload, self._secrets)
            if isinstance(error, RowError | ModelUnavailable | FatalRequestError):
                raise error from None
            raise StreamCut(
                f"error event in the stream: {error.message}", http_status=status, code=error.code
            ) from None
        except TimeoutError:
            raise StreamCut(
                f"the stream went quiet for {self._idle_s:g} s (or passed "
                f"{self._timeout.total:g} s in all) after {len(assembler.text)} chunks",
                http_status=status,
            ) from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise StreamCut(
                self._redact(f"the stream was cut after {len(assembler.text)} chunks: {exc}"),
                http_status=status,
            ) from None
        except aiohttp.ClientConnectionError as exc:
            raise ConnectionFailure(self._redact(f"connection failed: {exc}")) from None
        except aiohttp.ClientError as exc:
            raise ConnectionFailure(self._redact(f"HTTP client error: {exc}")) from None
        latency = time.perf_counter() - assembler.started
        if not assembler.complete:
            ending = "[DONE] without" if assembler.done else "the connection closed without"
            raise StreamCut(
                f"the stream ended ({ending} a finish reason) after "
                f"{sum(len(t) for t in assembler.text)} characters; a partial answer is not kept",
                http_status=status,
            )
        usage = assembler.usage or {}
        prompt, completion, total, cached, reasoning = usage_fields(usage)
        return Completion(
            text="".join(assembler.text),
            finish_reason=assembler.finish_reason,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            cached_tokens=cached,
            reasoning_tokens=reasoning,
            response_id=assembler.response_id,
            served_model=assembler.model,
            http_status=status,
            gateway_request_id=headers.get("X-Oneapi-Request-Id"),
            latency_s=latency,
            reasoning="".join(assembler.reasoning) or None,
            ratelimit=read_advice(headers),
            ttft_s=assembler.ttft_s(),
            last_token_s=assembler.last_token_s(),
            tool_calls=assembler.tool_calls_json(),
        )

    async def get_json(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """``GET`` a path relative to the base URL (``models``, ``../api/...``): status and JSON.

        Raises ``ConnectionFailure`` when the gateway cannot be reached.
        """
        assert self._session is not None, "use GatewayClient as an async context manager"
        url = self._base.join(yarl.URL(path.lstrip("/")))
        try:
            async with self._session.get(url, headers=headers, timeout=self._timeout) as response:
                body = await response.read()
                return response.status, _json_or_none(body)
        except TimeoutError:
            raise ConnectionFailure(f"no answer from {url} in time") from None
        except aiohttp.ClientError as exc:
            raise ConnectionFailure(self._redact(f"cannot reach {url}: {exc}")) from None

    def _timed_out(self) -> TimeoutFailure:
        return TimeoutFailure(
            f"no answer within {self._timeout.total:g} s; raise limits.timeout_s for slow models"
        )

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)


def _answer_payload(
    status: int, headers: Mapping[str, str], body: bytes, secrets: list[str] | None
) -> dict[str, Any]:
    """The JSON object of a successful answer; its classified error otherwise."""
    payload = _json_or_none(body)
    if status != 200 or not isinstance(payload, dict) or "error" in payload:
        raise classify_error(status, headers, body, payload, secrets or [])
    return payload


def parse_chat_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    latency_s: float,
    secrets: list[str] | None = None,
) -> Completion:
    """Turn one chat-completions answer into a ``Completion`` or raise its ``RequestError``."""
    payload = _answer_payload(status, headers, body, secrets)
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ServerError(
            "the gateway answered 200 without choices: " + _snippet(body, secrets or []),
            http_status=status,
        )
    choice = choices[0]
    message = _dict(choice.get("message"))
    prompt, completion, total, cached, reasoning_tokens = usage_fields(_dict(payload.get("usage")))
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    tool_calls = message.get("tool_calls")
    return Completion(
        _str_or_none(message.get("content")),
        _str_or_none(choice.get("finish_reason")),
        prompt,
        completion,
        total,
        cached,
        reasoning_tokens,
        _str_or_none(payload.get("id")),
        _str_or_none(payload.get("model")),
        status,
        headers.get("X-Oneapi-Request-Id"),
        latency_s,
        _str_or_none(reasoning),
        read_advice(headers),
        None,
        None,
        json.dumps(tool_calls) if isinstance(tool_calls, list) and tool_calls else None,
    )


def parse_other_response(
    api: Api,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    latency_s: float,
    secrets: list[str] | None = None,
) -> Completion:
    """An answer in the responses, messages, gemini or embeddings format, as a ``Completion``."""
    payload = _answer_payload(status, headers, body, secrets)
    answer = parse_answer(api, payload)
    if answer.get("finish_reason") is None and answer.get("text") is None:
        raise ServerError(
            "the gateway answered 200 without an answer: " + _snippet(body, secrets or []),
            http_status=status,
        )
    prompt, completion, total, cached, reasoning_tokens = usage_fields(answer.get("usage") or {})
    if total is None and prompt is not None:
        total = prompt + (completion or 0)
    return Completion(
        text=answer.get("text"),
        finish_reason=answer.get("finish_reason"),
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cached_tokens=cached,
        reasoning_tokens=reasoning_tokens,
        response_id=_str_or_none(answer.get("id")),
        served_model=_str_or_none(answer.get("model")),
        http_status=status,
        gateway_request_id=headers.get("X-Oneapi-Request-Id"),
        latency_s=latency_s,
        reasoning=answer.get("reasoning"),
        ratelimit=read_advice(headers),
        tool_calls=answer.get("tool_calls"),
        embedding=answer.get("embedding"),
    )


def usage_fields(
    usage: dict[str, Any],
) -> tuple[int | None, int | None, int | None, int | None, int | None]:
    """Prompt, completion, total, cached and reasoning tokens from any usage shape given."""
    prompt_details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    completion_details = usage.get("completion_tokens_details") or usage.get(
        "output_tokens_details"
    )
    return (
        _int_or_none(usage.get("prompt_tokens", usage.get("input_tokens"))),
        _int_or_none(usage.get("completion_tokens", usage.get("output_tokens"))),
        _int_or_none(usage.get("total_tokens")),
        _int_or_none(_get(prompt_details, "cached_tokens")),
        _int_or_none(_get(completion_details, "reasoning_tokens")),
    )


def classify_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    payload: Any,
    secrets: list[str],
) -> RequestError:
    """Choose the error class for a failed answer, by status and error code only."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, str):
        error = {"message": error}
    code = _code_of(error)
    readable = json.dumps(payload, ensure_ascii=False).encode() if payload is not None else body
    text = _snippet(readable, secrets)
    message = f"HTTP {status}: {text}" if text else f"HTTP {status} with an empty body"
    lowered = text.lower()
    kwargs: dict[str, Any] = {"http_status": status, "code": code}
    if status == 429:
        limited = RateLimited(message, retry_after=retry_after_seconds(headers), **kwargs)
        limited.advice = read_advice(headers)
        return limited
    if status == 401:
        return FatalRequestError(
            message + " (the API key was refused; check the key in the provider's variable)",
            **kwargs,
        )
    if status == 403:
        if code in _QUOTA_CODES or "quota" in lowered or "balance" in lowered:
            return FatalRequestError(
                message + " (the account or key has no balance left; top it up)", **kwargs
            )
        if "model" in lowered:
            return ModelUnavailable(message, **kwargs)
        return FatalRequestError(message + " (the gateway refused this key)", **kwargs)
    if code in _MODEL_CODES or any(marker in lowered for marker in _NO_CHANNEL_MARKERS):
        return ModelUnavailable(message, **kwargs)
    if status == 200:
        # An error inside a 200: Gemini's "no candidates" and relayed upstream failures.
        if code in _NON_RETRYABLE_5XX_CODES:
            return RowError(message, **kwargs)
        return ServerError(message, **kwargs)
    if status in (408, 409) or status >= 500:
        if code in _NON_RETRYABLE_5XX_CODES:
            return RowError(message, **kwargs)
        return ServerError(message, retry_after=retry_after_seconds(headers), **kwargs)
    return RowError(message, **kwargs)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a gateway asked for, in any dialect of ``batchrun.ratelimits``; capped."""
    advice = read_advice(headers)
    if advice is None or advice.retry_after_s is None:
        return None
    return min(advice.retry_after_s, MAX_RETRY_AFTER_S)


def _code_of(error: Any) -> str | None:
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    if code is None or code == "":
        return None
    return str(code)


def _snippet(body: bytes, secrets: list[str]) -> str:
    text = body[: MAX_ERROR_BODY * 4].decode("utf-8", errors="replace").strip()
    text = " ".join(text.split())
    if len(text) > MAX_ERROR_BODY:
        text = text[:MAX_ERROR_BODY] + "…"
    return redact(text, secrets)


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    try:
        return _loads(body)
    except ValueError:
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


def _int_or_none(value: Any) -> int | None:
    if type(value) is int:  # the usual case first (and never a bool)
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
