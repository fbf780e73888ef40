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

import email.utils
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
from batchrun.errors import (
    ConnectionFailure,
    FatalRequestError,
    ModelUnavailable,
    RateLimited,
    RequestError,
    RowError,
    ServerError,
    TimeoutFailure,
)
from batchrun.limits import parse_duration
from batchrun.plan import Request
from batchrun.redact import redact

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
    ratelimit_remaining: int | None = None
    ratelimit_reset_s: float | None = None


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
        extra_headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
    ) -> None:
        self._url = yarl.URL(base_url.rstrip("/") + "/chat/completions")
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
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> GatewayClient:
        connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._headers, timeout=self._timeout
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def complete(self, request: Request) -> Completion:
        """Send one request; return its completion or raise a classified ``RequestError``."""
        assert self._session is not None, "use GatewayClient as an async context manager"
        started = time.perf_counter()
        try:
            async with self._session.post(self._url, data=request.body) as response:
                body = await response.read()
                status = response.status
                headers = response.headers
        except TimeoutError:
            raise TimeoutFailure(
                f"no answer within {self._timeout.total:g} s; "
                "raise limits.timeout_s for slow models"
            ) from None
        except aiohttp.ClientConnectionError as exc:
            raise ConnectionFailure(self._redact(f"connection failed: {exc}")) from None
        except aiohttp.ClientError as exc:
            raise ConnectionFailure(self._redact(f"HTTP client error: {exc}")) from None
        latency = time.perf_counter() - started
        return parse_chat_response(status, headers, body, latency, self._secrets)

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)


def parse_chat_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    latency_s: float,
    secrets: list[str] | None = None,
) -> Completion:
    """Turn one chat-completions answer into a ``Completion`` or raise its ``RequestError``."""
    payload = _json_or_none(body)
    if status != 200 or not isinstance(payload, dict) or "error" in payload:
        raise classify_error(status, headers, body, payload, secrets or [])
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ServerError(
            "the gateway answered 200 without choices: " + _snippet(body, secrets or []),
            http_status=status,
        )
    choice = choices[0]
    message = _dict(choice.get("message"))
    usage = _dict(payload.get("usage"))
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    return Completion(
        text=_str_or_none(message.get("content")),
        finish_reason=_str_or_none(choice.get("finish_reason")),
        prompt_tokens=_int_or_none(usage.get("prompt_tokens", usage.get("input_tokens"))),
        completion_tokens=_int_or_none(usage.get("completion_tokens", usage.get("output_tokens"))),
        total_tokens=_int_or_none(usage.get("total_tokens")),
        cached_tokens=_int_or_none(_get(prompt_details, "cached_tokens")),
        reasoning_tokens=_int_or_none(_get(completion_details, "reasoning_tokens")),
        response_id=_str_or_none(payload.get("id")),
        served_model=_str_or_none(payload.get("model")),
        http_status=status,
        gateway_request_id=headers.get("X-Oneapi-Request-Id"),
        latency_s=latency_s,
        reasoning=_str_or_none(reasoning),
        ratelimit_remaining=_int_header(headers, "x-ratelimit-remaining-requests"),
        ratelimit_reset_s=parse_duration(headers.get("x-ratelimit-reset-requests")),
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
        return RateLimited(message, retry_after=retry_after_seconds(headers), **kwargs)
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
    """The wait a gateway asked for, from ``retry-after-ms`` or ``Retry-After``; capped."""
    value: float | None = None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = None
    seconds = headers.get("Retry-After")
    if value is None and seconds:
        try:
            value = float(seconds)
        except ValueError:
            try:
                value = email.utils.parsedate_to_datetime(seconds).timestamp() - time.time()
            except (ValueError, TypeError):
                value = None
    if value is None or value < 0:
        return None
    return min(value, MAX_RETRY_AFTER_S)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


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
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
