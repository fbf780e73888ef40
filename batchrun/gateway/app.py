"""The built-in OpenAI-compatible gateway: an aiohttp.web application.

It answers the generation routes of every API in ``ALL_FORMATS`` (chat
completions, responses, Claude messages, Gemini, embeddings; images,
speech, transcription, translation, rerank and video tasks: ``kinds.py``,
``video.py``) the way a
one-api/new-api gateway does: deterministic replies with realistic usage, a
configurable latency per model, rate limits per key and per model
(``limits.py``), unknown models refused, and the faults of the scenario
table (``scenarios.py``) chosen per request (header ``X-Sim-Scenario``), per
model, or at random with a given rate. It also serves model lists and
billing (``endpoints.py``), and, when ``settings.batches`` is set, OpenAI's
and Anthropic's batch APIs (``batch_routes.py``). Request ids, auth and counting are middlewares
applied to every route; ``/_sim/stats`` shows the counts.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from batchrun.gateway.auth import Guard, auth_middleware, authorization_of
from batchrun.gateway.batch_routes import BatchRoutes
from batchrun.gateway.batches import BatchStore
from batchrun.gateway.call import ApiFormat, Call
from batchrun.gateway.endpoints import Endpoints
from batchrun.gateway.formats import FORMATS
from batchrun.gateway.kinds import FILES_PATH, KIND_FORMATS, read_body
from batchrun.gateway.limits import build_limits
from batchrun.gateway.refusals import REFUSALS, FaultContext, invalid_body, unknown_scenario
from batchrun.gateway.request_ids import RequestIds, current_id
from batchrun.gateway.scenarios import SCENARIO_HEADER, SCENARIOS
from batchrun.gateway.settings import DEFAULT_MODELS, GatewaySettings
from batchrun.gateway.stats import STATS_PATH, GatewayStats, Handler, stats_middleware
from batchrun.gateway.video import VideosSubmit, VideoSubmit, VideoTasks

# Every generation API: the text formats, the artifact kinds (whose ``gemini`` adds image
# output to the text one) and the video submissions.
ALL_FORMATS: dict[str, ApiFormat] = {
    **FORMATS,
    **KIND_FORMATS,
    "video": VideoSubmit(),
    "videos": VideosSubmit(),
}

__all__ = ["DEFAULT_MODELS", "SCENARIO_HEADER", "Gateway", "GatewaySettings", "GatewayStats"]


@dataclass(frozen=True)
class Route:
    """One route: what answers it, how its caller is checked, and whether it generates."""

    method: str
    path: str
    handler: Handler
    guard: Guard | None = None
    generation: bool = False


class Gateway:
    """State and handlers of one gateway instance."""

    def __init__(self, settings: GatewaySettings | None = None) -> None:
        self.settings = settings or GatewaySettings()
        self.stats = GatewayStats()
        self._random = random.Random(self.settings.seed)
        self._ids = RequestIds()
        self.limits = build_limits(self.settings)
        self._endpoints = Endpoints(self.settings)
        self._routes: dict[AbstractRoute, Route] = {}
        self._batches = (
            BatchRoutes(BatchStore(self.settings)) if self.settings.batches is not None else None
        )

    def routes(self) -> list[Route]:
        """Every route of the gateway, generation routes first."""
        ends, billing = self._endpoints, self.settings.billing
        routes = [
            Route("POST", fmt.path, self._generate_with(fmt), Guard.KEY, generation=True)
            for fmt in ALL_FORMATS.values()
        ]
        videos = VideoTasks(self.settings)
        routes += [
            Route("GET", "/v1/video/generations/{task_id}", videos.newapi_status, Guard.KEY),
            Route("GET", "/v1/videos/{task_id}", videos.openai_status, Guard.KEY),
            Route("GET", "/v1/videos/{task_id}/content", videos.openai_content, Guard.KEY),
            Route("GET", FILES_PATH + "/{kind}/{name}", videos.serve_file),
        ]
        routes += [
            Route("GET", "/v1/models", ends.list_models, Guard.KEY),
            Route("GET", "/v1/models/{model}", ends.show_model),
            Route("GET", "/api/usage/token/", ends.token_usage),
            Route("GET", "/api/user/self", ends.user_self, Guard.ACCESS_TOKEN),
            Route("GET", STATS_PATH, self.show_stats),
        ]
        if self._batches is None:
            routes += [
                Route("*", "/v1/batches", ends.invalid_url),
                Route("*", "/v1/files", ends.no_channel),
            ]
        else:
            routes += [Route(m, p, h, Guard.KEY) for m, p, h in self._batches.table()]
            routes.append(Route("GET", "/_sim/batches", self._batches.sim))
        subscription_guard = Guard.DASHBOARD if billing == "dashboard" else None
        for prefix in ("", "/v1"):
            routes.append(
                Route(
                    "GET",
                    f"{prefix}/dashboard/billing/subscription",
                    ends.subscription,
                    subscription_guard,
                )
            )
            routes.append(
                Route("GET", f"{prefix}/dashboard/billing/usage", ends.usage, Guard.DASHBOARD)
            )
        return routes

    def app(self) -> web.Application:
        """The aiohttp application serving this gateway."""
        app = web.Application(
            client_max_size=64 * 1024**2,
            middlewares=[
                self._ids.middleware(),
                stats_middleware(self.stats, lambda r: self._route_of(r)[1]),
                auth_middleware(self.settings, self.stats, self._route_of),
            ],
        )
        for route in self.routes():
            added = app.router.add_route(route.method, route.path, route.handler)
            self._routes[added] = route
        app.on_response_prepare.append(self.limits.on_prepare)
        return app

    def _route_of(self, request: web.Request) -> tuple[Guard | None, bool]:
        route = self._routes.get(request.match_info.route)
        return (route.guard, route.generation) if route is not None else (None, False)

    async def show_stats(self, request: web.Request) -> web.Response:
        """What the gateway received so far (not counted as a request)."""
        return web.json_response(self.stats.as_json())

    def _generate_with(self, fmt: ApiFormat) -> Handler:
        async def generate(request: web.Request) -> web.StreamResponse:
            try:
                admitted = await self._admit(request, fmt)
                if isinstance(admitted, web.StreamResponse):
                    return admitted
                return await fmt.respond(admitted)
            finally:
                self.limits.finish(request)

        generate.__doc__ = f"``POST {fmt.path}``: the {fmt.name} API."
        return generate

    async def _admit(self, request: web.Request, fmt: ApiFormat) -> web.StreamResponse | Call:
        """Body, model, limits, scenario and latency: a refusal, or the call to answer."""
        request_id = current_id()
        body = await read_body(request)
        if not isinstance(body, dict):
            return invalid_body(FaultContext(request_id=request_id, model=""))
        model = fmt.model_of(request, body)
        if not isinstance(model, str) or not model:
            return REFUSALS["S09"](FaultContext(request_id=request_id, model=""))
        self.stats.by_model[model] += 1
        authorization = authorization_of(request, generation=True)
        ctx = FaultContext(request_id=request_id, model=model, authorization=authorization)
        if not self.settings.serves(model):
            return REFUSALS["S09b"](ctx)
        limited = self.limits.admit(request, body, model, ctx)
        if limited is not None:
            self.stats.rate_limited += 1
            return limited
        scenario = self._scenario(request, model)
        if scenario is not None and scenario not in SCENARIOS:
            return unknown_scenario(scenario)
        call = Call(request, body, model, request_id, scenario, self.settings)
        return await self._wait_or_fault(call, ctx)

    async def _wait_or_fault(self, call: Call, ctx: FaultContext) -> web.StreamResponse | Call:
        """After the model's latency: the scenario's refusal, if it replaces the answer."""
        delay = self._latency(call.model)
        if delay > 0:
            await asyncio.sleep(delay)
        scenario = SCENARIOS.get(call.scenario or "")
        if scenario is None or scenario.build is None:
            return call
        if scenario.slow:
            if call.streamed:
                return call
            await asyncio.sleep(self.settings.stall_s)
        return scenario.build(ctx)

    def _scenario(self, request: web.Request, model: str) -> str | None:
        named = request.headers.get(SCENARIO_HEADER) or self.settings.model_scenarios.get(model)
        if named:
            return named
        for scenario, rate in self.settings.fault_rates.items():
            if self._random.random() < rate:
                return scenario
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
