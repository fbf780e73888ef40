"""What the built-in gateway received and answered, counted by one middleware.

``GatewayStats`` holds the counters tests and ``/_sim/stats`` read.
``stats_middleware`` counts every request once: all of them in
``all_requests``, ``by_path`` and ``by_status``; generation requests also in
``requests`` and ``in_flight``. (``by_model``, ``authorizations`` and
``header_names`` are counted where the model and key are read.)
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

from batchrun.wire import JsonObject

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATS_PATH = "/_sim/stats"


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
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self) -> None:
        """A generation request was answered."""
        if self.in_flight_at_first_answer is None:
            self.in_flight_at_first_answer = self.in_flight
        self.in_flight -= 1

    def as_json(self) -> JsonObject:
        """The counters ``/_sim/stats`` serves."""
        return {
            "requests": self.requests,
            "all_requests": self.all_requests,
            "by_path": dict(self.by_path),
            "by_model": dict(self.by_model),
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "rate_limited": self.rate_limited,
            "max_in_flight": self.max_in_flight,
            "in_flight_at_first_answer": self.in_flight_at_first_answer,
        }


def stats_middleware(
    stats: GatewayStats, is_generation: Callable[[web.Request], bool]
) -> Middleware:
    """A middleware counting each request (but those of ``/_sim/stats``) into ``stats``."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == STATS_PATH:
            return await handler(request)
        stats.all_requests += 1
        stats.by_path[request.path] += 1
        generation = is_generation(request)
        if generation:
            stats.begin()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            stats.by_status[exc.status] += 1
            raise
        finally:
            if generation:
                stats.end()
        stats.by_status[response.status] += 1
        return response

    return count
