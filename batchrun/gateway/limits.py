"""The built-in gateway's rate limits: counters, and one class per kind of limit.

A *counter* says how long a request must wait: ``SlidingWindow`` (one-api's
one-minute log) or ``TokenBucket`` (a rate with a burst). A *limit kind*
decides whether a request passes and, if not, answers it with the 429 its
gateway sends. ``OneApiLimit`` is the one-api/new-api kind: requests a
minute per key and per model, refused in the style of scenario S10, S10b,
S11 or S12. Other dialects (OpenAI's x-ratelimit headers, LiteLLM, parallel
limits, Anthropic's headers) join as one more class each in ``build_limits``.
"""

from __future__ import annotations

import collections
import math
from typing import Protocol

from aiohttp import web

from batchrun.gateway.refusals import REFUSALS, FaultContext
from batchrun.gateway.settings import GatewaySettings


class Counter(Protocol):
    """Something that tells how long a request must wait to pass."""

    def wait_time(self, now: float) -> float:
        """0 if a request may pass now (and count it), else seconds until one may."""
        ...


class SlidingWindow:
    """A sliding log of request times, as one-api's limiter keeps (one minute by default).

    A shorter ``window_s`` allows ``per_minute`` scaled to it: 600 a minute over
    5 s is 50 in any 5 s.
    """

    def __init__(self, per_minute: float, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self.limit = max(1, int(per_minute * window_s / 60.0))
        self.times: collections.deque[float] = collections.deque()

    def wait_time(self, now: float) -> float:
        """0 if a request may pass now (and record it), else seconds until one may."""
        while self.times and now - self.times[0] >= self.window_s:
            self.times.popleft()
        if len(self.times) < self.limit:
            self.times.append(now)
            return 0.0
        return self.window_s - (now - self.times[0])


class TokenBucket:
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


class RateLimit(Protocol):
    """One kind of limit: lets a request through, or answers it with its own 429."""

    def refuse(self, model: str, ctx: FaultContext, now: float) -> web.Response | None:
        """None if the request may pass now (and count it), else the refusal to send."""
        ...


def retry_after_429(wait_s: float) -> web.Response:
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
    headers = {"Retry-After": str(math.ceil(seconds)), "retry-after-ms": str(int(seconds * 1000))}
    return web.json_response(body, status=429, headers=headers)


class OneApiLimit:
    """Requests a minute per key and per model, refused as scenario ``style`` words it."""

    def __init__(
        self,
        key_rpm: float | None,
        model_rpm: dict[str, float],
        style: str = "S10",
        burst_s: float | None = None,
        window_s: float = 60.0,
    ) -> None:
        self.style = style
        self.burst_s = burst_s
        self.window_s = window_s
        self.key = self._counter(key_rpm) if key_rpm is not None else None
        self.models = {model: self._counter(rpm) for model, rpm in model_rpm.items()}

    def _counter(self, per_minute: float) -> Counter:
        if self.burst_s is None:
            return SlidingWindow(per_minute, self.window_s)
        return TokenBucket(per_minute, self.burst_s)

    def refuse(self, model: str, ctx: FaultContext, now: float) -> web.Response | None:
        """None if both the key's and the model's counters let the request pass."""
        for counter in (self.key, self.models.get(model)):
            if counter is None:
                continue
            wait = counter.wait_time(now)
            if wait > 0:
                if self.style == "S12":
                    return retry_after_429(wait)
                return REFUSALS[self.style](ctx)
        return None


def build_limits(settings: GatewaySettings) -> list[RateLimit]:
    """The limits ``settings`` asks for, in the order a request meets them."""
    limits: list[RateLimit] = []
    if settings.key_rpm is not None or settings.model_rpm:
        limits.append(
            OneApiLimit(
                settings.key_rpm,
                settings.model_rpm,
                settings.rate_limit_style,
                settings.rate_limit_burst_s,
                settings.rate_limit_window_s,
            )
        )
    return limits
