"""The built-in gateway's rate limits, and the dialect each gateway words them in.

``GatewayLimits`` keeps the counters (``counters.py``) a gateway's settings
ask for: requests a minute per key and per model, tokens a minute per model
(each request charged its prompt plus ``max_tokens``, as OpenAI meters), and
a key's requests in flight (LiteLLM's ``max_parallel_requests``). ``admit``
lets a request through or answers it with its 429; ``on_prepare`` puts the
limits' headers on the answer as it starts (a stream's too), and ``finish``
gives the in-flight place back.

The dialect (``GatewaySettings.ratelimit_dialect``, or per request the
header ``X-Sim-Ratelimit``) decides the words:

============  ==================================  ===================================
dialect       on every answer                     on a 429
============  ==================================  ===================================
oneapi        nothing                             scenario ``rate_limit_style`` (S10..S12)
openai        ``x-ratelimit-{limit,remaining,     ``Retry-After``, ``retry-after-ms``
              reset}-{requests,tokens}``, reset   and the same budget headers
              a Go duration until whole again
litellm       nothing (a deployment's limit)      only ``llm_provider-retry-after``
                                                  (60 s), no ``Retry-After``
litellm-key   ``x-ratelimit-api_key-{limit,       ``retry-after`` (60 s) and the same
              remaining}-requests``,              budget headers
              ``..._requests_reset_at`` (a time)
anthropic     ``anthropic-ratelimit-{requests,    ``retry-after`` and the same budget
              tokens}-{limit,remaining,reset}``,  headers
              reset an RFC 3339 time
(any)         -                                   over ``max_parallel``: ``retry-after``
                                                  (60 s) and ``rate_limit_type:
                                                  max_parallel_requests``
============  ==================================  ===================================

LiteLLM's dialects count in fixed windows; the others in a sliding window
of ``rate_limit_window_s`` (or a token bucket when ``rate_limit_burst_s``
is set). Every request that meets the limits is logged per model
(``arrivals``, and ``admitted`` for those let through), so a benchmark can
draw what the gateway saw each second.
"""

from __future__ import annotations

import collections
import datetime
import math
import time

from aiohttp import web

from batchrun.gateway.call import turns_of
from batchrun.gateway.counters import (
    Counter,
    CounterState,
    FixedWindow,
    SlidingWindow,
    TokenBucket,
)
from batchrun.gateway.refusals import REFUSALS, FaultContext
from batchrun.gateway.replies import count_tokens
from batchrun.gateway.settings import GatewaySettings
from batchrun.wire import JsonObject

__all__ = ["DIALECT_HEADER", "Counter", "GatewayLimits", "build_limits", "retry_after_429"]

DIALECT_HEADER = "X-Sim-Ratelimit"
# The budget headers of an admitted request, kept on it until its answer goes.
_ADMITTED = web.RequestKey("batchrun.gateway.limits.admitted", dict[str, str])


def retry_after_429(wait_s: float, headers: dict[str, str] | None = None) -> web.Response:
    """OpenAI's 429 with ``Retry-After`` and ``retry-after-ms`` for a wait of ``wait_s``."""
    seconds = max(0.001, wait_s)
    body = {
        "error": {
            "message": "Rate limit reached for requests",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    retry = {"Retry-After": str(math.ceil(seconds)), "retry-after-ms": str(int(seconds * 1000))}
    return web.json_response(body, status=429, headers={**retry, **(headers or {})})


def go_duration(seconds: float) -> str:
    """``seconds`` as OpenAI writes a reset: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1.0:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60.0)
    rest_text = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{rest_text}s" if minutes else f"{rest_text}s"


def rfc3339(seconds_from_now: float) -> str:
    """The wall time ``seconds_from_now`` away, as RFC 3339 in UTC."""
    moment = datetime.datetime.fromtimestamp(time.time() + seconds_from_now, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def charged_tokens(body: JsonObject) -> float:
    """What a request costs against a token limit: its prompt (as usage counts it) + max_tokens."""
    messages = body.get("messages") or []
    prompt = "\n".join(text for _, text in turns_of(messages))
    prompt_tokens = count_tokens(prompt) + 3 * len(messages if isinstance(messages, list) else [])
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 0
    return float(prompt_tokens + (max_tokens if isinstance(max_tokens, int) else 0))


class GatewayLimits:
    """Every limit of one gateway: counters per key and per model, and requests in flight."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.key = self._counter(settings.key_rpm) if settings.key_rpm else None
        self.models = {model: self._counter(rpm) for model, rpm in settings.model_rpm.items()}
        self.tokens = {model: self._counter(tpm) for model, tpm in settings.model_tpm.items()}
        self.in_flight = 0
        self.arrivals: dict[str, list[float]] = collections.defaultdict(list)
        self.admitted: dict[str, list[float]] = collections.defaultdict(list)

    def _counter(self, per_minute: float) -> Counter:
        settings = self.settings
        if settings.rate_limit_burst_s is not None:
            return TokenBucket(per_minute, settings.rate_limit_burst_s)
        if settings.ratelimit_dialect.startswith("litellm"):
            return FixedWindow(per_minute, settings.rate_limit_window_s)
        return SlidingWindow(per_minute, settings.rate_limit_window_s)

    @property
    def active(self) -> bool:
        """Whether any limit is set (else ``admit`` lets everything through untouched)."""
        return bool(self.key or self.models or self.tokens or self.settings.max_parallel)

    def admit(
        self, request: web.Request, body: JsonObject, model: str, ctx: FaultContext
    ) -> web.Response | None:
        """None if the request may pass (and is counted), else the 429 its dialect sends."""
        if not self.active:
            return None
        now = time.monotonic()
        self.arrivals[model].append(now)
        dialect = request.headers.get(DIALECT_HEADER) or self.settings.ratelimit_dialect
        parallel = self.settings.max_parallel
        if parallel is not None and self.in_flight >= parallel:
            return _parallel_429(parallel)
        checks = (
            (self.key, 1.0),
            (self.models.get(model), 1.0),
            (self.tokens.get(model), charged_tokens(body) if model in self.tokens else 0.0),
        )
        for counter, cost in checks:
            if counter is not None:
                wait = counter.take(now, cost)
                if wait > 0:
                    return self._refuse(dialect, wait, ctx, self._headers(dialect, model, now))
        request[_ADMITTED] = self._headers(dialect, model, now)
        self.admitted[model].append(now)
        self.in_flight += 1
        return None

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Put an admitted request's budget headers on its answer as it starts.

        Every answer, streamed ones too, gets them with its status line (an
        ``on_response_prepare`` signal): a stream's headers go before its body.
        """
        headers = request.get(_ADMITTED)
        if headers:
            response.headers.update(headers)

    def finish(self, request: web.Request) -> None:
        """The request is answered (once): its in-flight place is given back.

        Its headers stay on it: a whole answer is prepared only after this.
        """
        if _ADMITTED in request:
            self.in_flight -= 1

    def _headers(self, dialect: str, model: str, now: float) -> dict[str, str]:
        requests = self.models.get(model) or self.key
        tokens = self.tokens.get(model)
        if dialect == "openai":
            return _openai_headers(requests, tokens, now)
        if dialect == "anthropic":
            return _anthropic_headers(requests, tokens, now)
        if dialect == "litellm-key" and self.key is not None:
            state = self.key.state(now)
            return {
                "x-ratelimit-api_key-limit-requests": str(int(state.per_minute)),
                "x-ratelimit-api_key-remaining-requests": str(int(state.remaining)),
                "x-ratelimit-api_key-requests_reset_at": rfc3339(state.reset_s),
            }
        return {}

    def _refuse(
        self, dialect: str, wait: float, ctx: FaultContext, headers: dict[str, str]
    ) -> web.Response:
        retry = self.settings.rate_limit_retry_after_s
        if dialect == "openai":
            return retry_after_429(wait, headers)
        if dialect == "litellm":
            return _litellm_429({"llm_provider-retry-after": str(math.ceil(retry))})
        if dialect == "litellm-key":
            return _litellm_429({"retry-after": str(math.ceil(retry)), **headers})
        if dialect == "anthropic":
            body = {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": "Number of requests exceeded"},
            }
            retry_headers = {"retry-after": str(math.ceil(wait)), **headers}
            return web.json_response(body, status=429, headers=retry_headers)
        style = self.settings.rate_limit_style
        return retry_after_429(wait) if style == "S12" else REFUSALS[style](ctx)


def _openai_headers(requests: Counter | None, tokens: Counter | None, now: float) -> dict[str, str]:
    headers: dict[str, str] = {}
    for unit, counter in (("requests", requests), ("tokens", tokens)):
        if counter is not None:
            state: CounterState = counter.state(now)
            headers[f"x-ratelimit-limit-{unit}"] = str(int(state.per_minute))
            headers[f"x-ratelimit-remaining-{unit}"] = str(int(state.remaining))
            headers[f"x-ratelimit-reset-{unit}"] = go_duration(state.reset_s)
    return headers


def _anthropic_headers(
    requests: Counter | None, tokens: Counter | None, now: float
) -> dict[str, str]:
    headers: dict[str, str] = {}
    for unit, counter in (("requests", requests), ("tokens", tokens)):
        if counter is not None:
            state = counter.state(now)
            headers[f"anthropic-ratelimit-{unit}-limit"] = str(int(state.per_minute))
            headers[f"anthropic-ratelimit-{unit}-remaining"] = str(int(state.remaining))
            headers[f"anthropic-ratelimit-{unit}-reset"] = rfc3339(state.reset_s)
    return headers


def _litellm_429(headers: dict[str, str]) -> web.Response:
    body = {
        "error": {
            "message": "litellm.RateLimitError: Rate limit exceeded; over the defined rpm limit",
            "type": "throttling_error",
            "param": None,
            "code": "429",
        }
    }
    return web.json_response(body, status=429, headers=headers)


def _parallel_429(limit: int) -> web.Response:
    body = {
        "error": {
            "message": f"Max parallel request limit reached {limit}",
            "type": "None",
            "param": None,
            "code": "429",
        }
    }
    headers = {"retry-after": "60", "rate_limit_type": "max_parallel_requests"}
    return web.json_response(body, status=429, headers=headers)


def build_limits(settings: GatewaySettings) -> GatewayLimits:
    """The limits ``settings`` asks for."""
    return GatewayLimits(settings)
