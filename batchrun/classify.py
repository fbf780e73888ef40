"""From a failed answer to batchrun's error: which ``RequestError`` a gateway's reply is.

``classify_error`` decides by HTTP status and error code, never by type, and
by message only where a gateway has no code for what it says: "no channel"
(one-api, new-api) and "this model is unknown" (a 400 or 404 from LiteLLM,
OpenAI, Anthropic or Gemini, in the wordings of ``_UNKNOWN_MODEL``), both
``ModelUnavailable``, so the model stops after a short confirmation rather
than failing each row. ``decode`` is the one JSON reader of
answers; ``snippet`` is the error text a results row keeps, with every
secret masked before it is cut to length, so no part of a key survives the
cut.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from orjson import loads as _loads

from batchrun.errors import (
    FatalRequestError,
    ModelUnavailable,
    RateLimited,
    RequestError,
    RowError,
    ServerError,
)
from batchrun.ratelimits import read_advice
from batchrun.redact import redact
from batchrun.wire import JsonObject

MAX_ERROR_BODY = 500
MAX_RETRY_AFTER_S = 120.0
_NO_CHANNEL_MARKERS = ("无可用渠道", "no available channel", "failed to get available channel")
_MODEL_CODES = {"model_not_found", "model_price_error"}
_QUOTA_CODES = {"insufficient_user_quota", "pre_consume_token_quota_failed"}
_NON_RETRYABLE_5XX_CODES = {"invalid_request", "invalid_text_request"}
# How gateways and providers say, in a 400 or 404, that they do not know the model asked for:
# LiteLLM "Invalid model name passed in model=x"; OpenAI "The model `x` does not exist or you
# do not have access to it" (code model_not_found); Gemini "models/x is not found for API
# version v1beta"; Anthropic's not_found_error "model: x"; new-api "model x not found".
_UNKNOWN_MODEL = re.compile(
    r"invalid model (?:name|id)\b|model_not_found|\bunknown model\b|no such model"
    r"|\bmodel [`'\"]?[\w./:@-]+[`'\"]? (?:does not exist|(?:is )?not found)"
    r"|\bmodels/\S+ is not found|\"message\": \"model: ",
    re.IGNORECASE,
)


def decode(body: bytes) -> Any:
    """The JSON value of a body, or None when it is empty or not JSON."""
    if not body:
        return None
    try:
        return _loads(body)
    except ValueError:
        return None


def answer_payload(
    status: int, headers: Mapping[str, str], body: bytes, secrets: list[str]
) -> JsonObject:
    """The JSON object of a successful answer; its classified error otherwise.

    Only a non-null ``error`` makes a 200 an error: published schemas (the
    Responses API's) carry ``"error": null`` in every successful body.
    """
    payload = decode(body)
    if status != 200 or not isinstance(payload, dict) or payload.get("error") is not None:
        raise classify_error(status, headers, body, payload, secrets)
    return payload


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
    text = snippet(readable, secrets)
    message = f"HTTP {status}: {text}" if text else f"HTTP {status} with an empty body"
    lowered = text.lower()
    kwargs: JsonObject = {"http_status": status, "code": code}
    if status == 429:
        advice = read_advice(headers)
        return RateLimited(
            message, retry_after=retry_after_seconds(headers), advice=advice, **kwargs
        )
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
    if status in (400, 404) and _UNKNOWN_MODEL.search(text):
        return ModelUnavailable(message + " (the gateway does not know this model)", **kwargs)
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


def snippet(body: bytes, secrets: list[str]) -> str:
    """The start of a body as one line of at most ``MAX_ERROR_BODY`` characters, redacted.

    Redaction runs on more text than is kept, and before the cut: a key that
    straddles the cut is masked whole, never left half shown.
    """
    text = body[: MAX_ERROR_BODY * 4].decode("utf-8", errors="replace").strip()
    text = redact(" ".join(text.split()), secrets)
    if len(text) > MAX_ERROR_BODY:
        text = text[:MAX_ERROR_BODY] + "…"
    return text


def _code_of(error: Any) -> str | None:
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    if code is None or code == "":
        return None
    return str(code)
