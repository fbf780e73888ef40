"""The built-in OpenAI-compatible gateway: an aiohttp.web application.

It answers ``POST /v1/chat/completions`` and ``GET /v1/models`` the way a
one-api/new-api gateway does: deterministic replies with realistic usage,
a configurable latency per model, rate limits per key and per model, and
the faults of ../shared/GATEWAYS.md chosen per request (header
``X-Sim-Scenario``), per model, or at random with a given rate. It counts
every request it receives, so tests can assert what was (not) sent.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

try:
    import orjson as _orjson
except ImportError:  # orjson is optional: the standard library gives the same JSON
    _orjson = None  # type: ignore[assignment]

from batchrun.gateway.faults import ANSWER_SCENARIOS, FAULTS, FaultContext
from batchrun.gateway.formats import render_other
from batchrun.gateway.replies import answer, count_tokens
from batchrun.gateway.streaming import STREAM_SCENARIOS, stream_answer

SCENARIO_HEADER = "X-Sim-Scenario"
# Listed when no model list is configured (any model is then served): a few real-looking
# ids and the generic ones the examples and tests use.
DEFAULT_MODELS = (
    "gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "deepseek-chat",
    "text-embedding-3-small", "model-a", "model-b", "model-c", "judge-model",
)  # fmt: skip


@dataclass
class GatewaySettings:
    """How the built-in gateway behaves. Every field has a healthy default."""

    models: list[str] | None = None
    keys: list[str] | None = None
    latency_ms: float = 0.0
    model_latency_ms: dict[str, float] = field(default_factory=dict)
    latency_sigma: float = 0.0
    accuracy: dict[str, float] = field(default_factory=dict)
    default_accuracy: float = 1.0
    model_scenarios: dict[str, str] = field(default_factory=dict)
    fault_rates: dict[str, float] = field(default_factory=dict)
    key_rpm: float | None = None
    model_rpm: dict[str, float] = field(default_factory=dict)
    rate_limit_style: str = "S10"
    rate_limit_burst_s: float | None = None
    ratelimit_headers: bool = False
    stream_chunk_ms: float = 0.0
    stall_s: float = 2.0
    models_shape: str = "oneapi"  # oneapi | newapi | newapi2026 | missing (404, no list)
    balance_usd: float = 100.0  # the key's limit; > 100,000,000 means unlimited
    used_usd: float = 12.5
    billing: str = "dashboard"  # dashboard | token_usage (new-api's /api/usage/token/)
    access_token: str = "batchrun-access-token"  # the system access token of /api/user/self
    seed: int = 0


@dataclass
class GatewayStats:
    """What the gateway received and answered."""

    requests: int = 0  # generation requests (chat, responses, messages, embeddings...)
    all_requests: int = 0  # everything, model lists and billing included
    by_path: collections.Counter[str] = field(default_factory=collections.Counter)
    by_model: collections.Counter[str] = field(default_factory=collections.Counter)
    by_status: collections.Counter[int] = field(default_factory=collections.Counter)
    rate_limited: int = 0
    authorizations: set[str] = field(default_factory=set)  # each distinct one
    header_names: collections.Counter[str] = field(default_factory=collections.Counter)
    in_flight: int = 0  # generation requests being answered now
    max_in_flight: int = 0
    in_flight_at_first_answer: int | None = None  # how many were out when the first came back

    def begin(self) -> None:
        """A generation request came in."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self) -> None:
        """A generation request was answered."""
        if self.in_flight_at_first_answer is None:
            self.in_flight_at_first_answer = self.in_flight
        self.in_flight -= 1


class _Window:
    """A sliding one-minute log of request times, as one-api's limiter keeps."""

    def __init__(self, per_minute: float) -> None:
        self.limit = max(1, int(per_minute))
        self.times: collections.deque[float] = collections.deque()

    def wait_time(self, now: float) -> float:
        """0 if a request may pass now (and record it), else seconds until one may."""
        while self.times and now - self.times[0] >= 60.0:
            self.times.popleft()
        if len(self.times) < self.limit:
            self.times.append(now)
            return 0.0
        return 60.0 - (now - self.times[0])


def _dumps(value: Any) -> bytes:
    return _orjson.dumps(value) if _orjson is not None else json.dumps(value).encode()


def _loads(data: bytes) -> Any:
    return _orjson.loads(data) if _orjson is not None else json.loads(data)


def _text_of(content: Any) -> str:
    """The text of a message's content, a string or a list of parts."""
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return str(content or "")


def _images_of(content: Any) -> list[str]:
    """A short description of each image part: its URL, or the size of inlined data."""
    found = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            found.append(f"{len(url) * 3 // 4} bytes inline" if url.startswith("data:") else url)
    return found


def _fill_schema(response_format: dict[str, Any], text: str) -> dict[str, Any]:
    """An object that fits a json_schema response format (strings carry the answer)."""
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    properties = schema.get("properties") or {"answer": {"type": "string"}}
    number = next((int(t) for t in text.replace(".", " ").split() if t.lstrip("-").isdigit()), 0)
    samples = {
        "string": text,
        "integer": number,
        "number": float(number),
        "boolean": True,
        "array": [],
        "object": {},
    }
    return {name: samples.get(str(prop.get("type")), text) for name, prop in properties.items()}


class _Bucket:
    """A token bucket: ``per_minute`` a minute, at most ``burst_s`` seconds' worth at once."""

    def __init__(self, per_minute: float, burst_s: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.tokens = self.capacity
        self.updated: float | None = None

    def wait_time(self, now: float) -> float:
        """0 if a request may pass now (and take its token), else seconds until one may."""
        if self.updated is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Gateway:
    """State and handlers of one gateway instance."""

    def __init__(self, settings: GatewaySettings | None = None) -> None:
        self.settings = settings or GatewaySettings()
        self.stats = GatewayStats()
        self._random = random.Random(self.settings.seed)
        self._ids = itertools.count(1)
        self._stamp_second = -1
        self._stamp = ""
        self._key_window = (
            self._limit(self.settings.key_rpm) if self.settings.key_rpm is not None else None
        )
        self._model_windows = {m: self._limit(r) for m, r in self.settings.model_rpm.items()}

    def _limit(self, per_minute: float) -> _Window | _Bucket:
        burst = self.settings.rate_limit_burst_s
        return _Window(per_minute) if burst is None else _Bucket(per_minute, burst)

    def app(self) -> web.Application:
        """The aiohttp application serving this gateway."""
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_post("/v1/{api:responses|messages|embeddings}", self.other_format)
        app.router.add_post("/v1beta/models/{model}:generateContent", self.other_format)
        app.router.add_get("/v1/models/{model}", self.show_model)
        for prefix in ("", "/v1"):
            app.router.add_get(f"{prefix}/dashboard/billing/subscription", self.subscription)
            app.router.add_get(f"{prefix}/dashboard/billing/usage", self.usage)
        app.router.add_get("/api/usage/token/", self.token_usage)
        app.router.add_get("/api/user/self", self.user_self)
        app.router.add_route("*", "/v1/batches", self.invalid_url)
        app.router.add_route("*", "/v1/files", self.no_channel)
        app.router.add_get("/_sim/stats", self.show_stats)
        return app

    async def show_stats(self, request: web.Request) -> web.Response:
        """What the gateway received so far (not counted as a request)."""
        stats = self.stats
        return web.json_response(
            {
                "requests": stats.requests,
                "all_requests": stats.all_requests,
                "by_path": dict(stats.by_path),
                "by_model": dict(stats.by_model),
                "by_status": {str(k): v for k, v in stats.by_status.items()},
                "rate_limited": stats.rate_limited,
                "max_in_flight": stats.max_in_flight,
                "in_flight_at_first_answer": stats.in_flight_at_first_answer,
            }
        )

    def _request_id(self) -> str:
        now = int(time.time())
        if now != self._stamp_second:
            self._stamp_second = now
            self._stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
        return f"{self._stamp}{next(self._ids):09d}batchrun"

    def _authorized(self, request: web.Request) -> bool:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        key = key.removeprefix("sk-")
        if not key:
            return False
        return self.settings.keys is None or key in {
            k.removeprefix("sk-") for k in self.settings.keys
        }

    def _offered(self) -> list[str]:
        return list(self.settings.models or DEFAULT_MODELS)

    async def list_models(self, request: web.Request) -> web.Response:
        """``GET /v1/models`` in the list shape of one-api, new-api (2025) or new-api (2026)."""
        self.stats.all_requests += 1
        self.stats.by_path[request.path] += 1
        if not self._authorized(request):
            return FAULTS["S07"](FaultContext(request_id=self._request_id(), model=""))
        if self.settings.models_shape == "missing":
            return web.Response(status=404, text="404 page not found")
        data = [
            {
                "id": model,
                "object": "model",
                "created": 1626777600,
                "owned_by": "batchrun",
                "permission": None,
                "root": model,
                "parent": None,
            }
            for model in self._offered()
        ]
        shape = self.settings.models_shape
        if shape == "newapi":
            return web.json_response({"success": True, "data": data})
        if shape == "newapi2026":
            return web.json_response({"success": True, "object": "list", "data": data})
        return web.json_response({"object": "list", "data": data})

    async def show_model(self, request: web.Request) -> web.Response:
        """``GET /v1/models/{id}``: only a static table; 200 with an error for the rest (S27)."""
        self.stats.all_requests += 1
        model = request.match_info["model"]
        if model in DEFAULT_MODELS[:4]:
            return web.json_response({"id": model, "object": "model", "owned_by": "batchrun"})
        return web.json_response(
            {
                "error": {
                    "message": f"The model '{model}' does not exist",
                    "type": "invalid_request_error",
                    "param": "model",
                    "code": "model_not_found",
                }
            }
        )

    async def subscription(self, request: web.Request) -> web.Response:
        """``/dashboard/billing/subscription``: the key's limit in dollars (S28)."""
        self.stats.all_requests += 1
        self.stats.by_path[request.path] += 1
        if self.settings.billing != "dashboard":
            return web.json_response({"error": {"message": "Invalid URL", "type": "x"}}, status=404)
        if not self._authorized(request):
            return web.json_response({"error": {"message": "无效的令牌", "type": "one_api_error"}})
        limit = self.settings.balance_usd
        return web.json_response(
            {
                "object": "billing_subscription",
                "has_payment_method": True,
                "soft_limit_usd": limit,
                "hard_limit_usd": limit,
                "system_hard_limit_usd": limit,
                "access_until": 0,
            }
        )

    async def usage(self, request: web.Request) -> web.Response:
        """``/dashboard/billing/usage``: what was used, in cents (S28)."""
        self.stats.all_requests += 1
        if not self._authorized(request):
            return web.json_response({"error": {"message": "无效的令牌", "type": "one_api_error"}})
        return web.json_response({"object": "list", "total_usage": self.settings.used_usd * 100})

    async def token_usage(self, request: web.Request) -> web.Response:
        """new-api's ``/api/usage/token/`` in quota units (500,000 = $1)."""
        self.stats.all_requests += 1
        if self.settings.billing != "token_usage":
            return web.Response(status=404, text="404 page not found")
        quota = 500_000
        limit, used = self.settings.balance_usd, self.settings.used_usd
        return web.json_response(
            {
                "code": True,
                "message": "ok",
                "data": {
                    "object": "token_usage",
                    "name": "key",
                    "total_granted": limit * quota,
                    "total_used": used * quota,
                    "total_available": (limit - used) * quota,
                    "unlimited_quota": limit >= 100_000_000,
                    "expires_at": 0,
                },
            }
        )

    async def user_self(self, request: web.Request) -> web.Response:
        """``/api/user/self`` with the system access token (not the API key); 200 either way."""
        self.stats.all_requests += 1
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if token != self.settings.access_token:
            return web.json_response(
                {"success": False, "message": "无权进行此操作，access token 无效"}
            )
        quota = 500_000
        return web.json_response(
            {
                "success": True,
                "message": "",
                "data": {
                    "id": 1,
                    "username": "batchrun",
                    "group": "default",
                    "quota": int((self.settings.balance_usd - self.settings.used_usd) * quota),
                    "used_quota": int(self.settings.used_usd * quota),
                    "request_count": 0,
                },
            }
        )

    async def invalid_url(self, request: web.Request) -> web.Response:
        """No Batch API on these gateways (S29)."""
        self.stats.all_requests += 1
        return web.json_response(
            {
                "error": {
                    "message": f"Invalid URL ({request.method} {request.path})",
                    "type": "invalid_request_error",
                    "param": "",
                    "code": "",
                }
            },
            status=404,
        )

    async def no_channel(self, request: web.Request) -> web.Response:
        """``/v1/files``: the distributor answers first, for the empty model (S29)."""
        self.stats.all_requests += 1
        return FAULTS["S09"](FaultContext(request_id=self._request_id(), model=""))

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``: auth, model, limits, latency, fault or answer."""
        self.stats.requests += 1
        self.stats.all_requests += 1
        self.stats.by_path[request.path] += 1
        request_id = self._request_id()
        self.stats.begin()
        try:
            response = await self._chat(request, request_id)
        finally:
            self.stats.end()
        if not response.prepared:
            response.headers["X-Oneapi-Request-Id"] = request_id
        self.stats.by_status[response.status] += 1
        return response

    async def _chat(self, request: web.Request, request_id: str) -> web.StreamResponse:
        admitted = await self._admit(request, request_id)
        if isinstance(admitted, web.StreamResponse):
            return admitted
        body, model, scenario = admitted
        if body.get("stream") is True:
            return await self._stream(request, body, model, request_id, scenario)
        return self._answer(body, model, request_id, scenario)

    async def _admit(
        self, request: web.Request, request_id: str, model: str | None = None
    ) -> web.StreamResponse | tuple[dict[str, Any], str, str | None]:
        """Auth, body, model, limits, scenario and latency; a refusal, or what to answer."""
        self.stats.header_names.update(name.lower() for name in request.headers)
        auth = request.headers.get("Authorization", "")
        for other in ("x-api-key", "x-goog-api-key"):
            if not auth and request.headers.get(other):
                auth = "Bearer " + request.headers[other]
        self.stats.authorizations.add(auth)
        ctx = FaultContext(request_id=request_id, model="")
        key = auth.removeprefix("Bearer ").strip().removeprefix("sk-")
        if not key:
            return FAULTS["S07"](ctx)
        if self.settings.keys is not None and key not in {
            k.removeprefix("sk-") for k in self.settings.keys
        }:
            return FAULTS["S07"](ctx)
        try:
            body = _loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response(
                {
                    "error": {
                        "message": f"invalid JSON body (request id: {request_id})",
                        "type": "new_api_error",
                        "param": "",
                        "code": "invalid_text_request",
                    }
                },
                status=400,
            )
        model = model or body.get("model")
        if not isinstance(model, str) or not model:
            return FAULTS["S09"](ctx)
        self.stats.by_model[model] += 1
        ctx = FaultContext(request_id=request_id, model=model, authorization=auth)
        if self.settings.models is not None and model not in self.settings.models:
            return FAULTS["S09"](ctx)
        limited = self._rate_limit(model, ctx)
        if limited is not None:
            self.stats.rate_limited += 1
            return limited
        scenario = self._scenario(request, model)
        known = FAULTS.keys() | ANSWER_SCENARIOS | STREAM_SCENARIOS
        if scenario is not None and scenario not in known:
            return web.json_response(
                {
                    "error": {
                        "message": f"unknown scenario {scenario!r}",
                        "type": "batchrun_mock",
                        "param": SCENARIO_HEADER,
                        "code": "unknown_scenario",
                    }
                },
                status=400,
            )
        delay = self._latency(model)
        if delay > 0:
            await asyncio.sleep(delay)
        if scenario is not None and scenario in FAULTS:
            return FAULTS[scenario](ctx)
        return body, model, scenario

    async def other_format(self, request: web.Request) -> web.StreamResponse:
        """``/v1/responses``, ``/v1/messages``, Gemini's ``generateContent``, ``/v1/embeddings``."""
        self.stats.requests += 1
        self.stats.all_requests += 1
        self.stats.by_path[request.path] += 1
        request_id = self._request_id()
        api = request.match_info.get("api") or (
            "gemini" if "generateContent" in request.path else ""
        )
        model = request.match_info.get("model")
        admitted = await self._admit(request, request_id, model)
        if isinstance(admitted, web.StreamResponse):
            response = admitted
        else:
            body, chosen, _ = admitted
            response = web.json_response(
                render_other(api, body, chosen, request_id, self._accuracy(chosen))
            )
        if not response.prepared:
            response.headers["X-Oneapi-Request-Id"] = request_id
        self.stats.by_status[response.status] += 1
        return response

    def _accuracy(self, model: str) -> float:
        return self.settings.accuracy.get(model, self.settings.default_accuracy)

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        model: str,
        request_id: str,
        scenario: str | None,
    ) -> web.StreamResponse:
        answered = self._answer(body, model, request_id, scenario)
        payload = json.loads(answered.body) if isinstance(answered.body, bytes) else {}
        message = payload["choices"][0]["message"]
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        usage = payload.get("usage") or {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
        }
        return await stream_answer(
            request,
            request_id=request_id,
            model=model,
            text=message.get("content") or "",
            usage=usage,
            include_usage=include_usage,
            scenario=scenario,
            chunk_delay_s=self.settings.stream_chunk_ms / 1000.0,
            stall_s=self.settings.stall_s,
        )

    def _scenario(self, request: web.Request, model: str) -> str | None:
        named = request.headers.get(SCENARIO_HEADER) or self.settings.model_scenarios.get(model)
        if named:
            return named
        for scenario, rate in self.settings.fault_rates.items():
            if self._random.random() < rate:
                return scenario
        return None

    def _rate_limit(self, model: str, ctx: FaultContext) -> web.Response | None:
        now = time.monotonic()
        windows = [w for w in (self._key_window, self._model_windows.get(model)) if w]
        for window in windows:
            wait = window.wait_time(now)
            if wait > 0:
                if self.settings.rate_limit_style == "S12":
                    seconds = max(0.001, wait)
                    return web.json_response(
                        {
                            "error": {
                                "message": "Rate limit reached for requests",
                                "type": "requests",
                                "param": None,
                                "code": "rate_limit_exceeded",
                            }
                        },
                        status=429,
                        headers={
                            "Retry-After": str(math.ceil(seconds)),
                            "retry-after-ms": str(int(seconds * 1000)),
                        },
                    )
                return FAULTS[self.settings.rate_limit_style](ctx)
        return None

    def _latency(self, model: str) -> float:
        mean_ms = self.settings.model_latency_ms.get(model, self.settings.latency_ms)
        if mean_ms <= 0:
            return 0.0
        sigma = self.settings.latency_sigma
        if sigma <= 0:
            return mean_ms / 1000.0
        mu = math.log(mean_ms / 1000.0) - sigma * sigma / 2
        return self._random.lognormvariate(mu, sigma)

    def _answer(
        self, body: dict[str, Any], model: str, request_id: str, scenario: str | None
    ) -> web.Response:
        messages = body.get("messages") or []
        prompt = "\n".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))
        last = next(
            (m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"),
            {"content": prompt},
        )
        last_user = _text_of(last.get("content"))
        text = answer(model, last_user, self._accuracy(model))
        images = _images_of(last.get("content"))
        if images:
            text = f"I see {len(images)} image(s) ({', '.join(images)}). {text}"
        structured = body.get("response_format")
        if isinstance(structured, dict) and structured.get("type") in (
            "json_object",
            "json_schema",
        ):
            text = json.dumps(_fill_schema(structured, text))
        finish: str | None = "stop"
        completion_tokens = count_tokens(text)
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(max_tokens, int) and 0 < max_tokens < completion_tokens:
            text = text[: max_tokens * 4]
            completion_tokens = max_tokens
            finish = "length"
        prompt_tokens = count_tokens(prompt) + 3 * len(messages)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        reasoning_tokens = 0
        tools = body.get("tools")
        if isinstance(tools, list) and tools and body.get("tool_choice") != "none":
            function = tools[0].get("function", {}) if isinstance(tools[0], dict) else {}
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_{request_id[-12:]}",
                    "type": "function",
                    "function": {
                        "name": function.get("name", "tool"),
                        "arguments": json.dumps({"question": last_user}),
                    },
                }
            ]
            finish = "tool_calls"
        if body.get("reasoning_effort") or body.get("thinking") or body.get("reasoning"):
            message["reasoning_content"] = f"Working it out step by step: {last_user}"
            reasoning_tokens = count_tokens(message["reasoning_content"])
            completion_tokens += reasoning_tokens
        if scenario == "S24":
            finish = "max_tokens"
        elif scenario == "S24b":
            finish = None
        elif scenario == "S24c":
            message["content"] = ""
            message["reasoning_content"] = f"Thinking about it: {text}"
            reasoning_tokens = completion_tokens
        elif scenario == "S24d":
            finish = "content_filter"
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_batchrun",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": reasoning_tokens,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
        }
        if scenario == "S05":
            del payload["usage"]
        headers = None
        if self.settings.ratelimit_headers:
            headers = {
                "x-ratelimit-limit-requests": "5000",
                "x-ratelimit-remaining-requests": "4999",
                "x-ratelimit-reset-requests": "12ms",
            }
        return web.Response(body=_dumps(payload), content_type="application/json", headers=headers)
