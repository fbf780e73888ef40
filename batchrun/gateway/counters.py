"""The built-in gateway's counters: how a limit counts what passes, and what it says it has left.

A counter answers two questions: may a request of ``cost`` (1, or its
tokens) pass now (``take``: 0, counted, or the seconds until it may), and
what is the window's state (``state``: limit a minute, remaining, seconds
until whole again or until it starts over). Three kinds:

* ``SlidingWindow``: a log of what passed over the last ``window_s``
  (one-api's one-minute log; OpenAI-style limits over a few seconds).
  Slots come back continuously, as the oldest entries leave the window.
* ``FixedWindow``: a count per window of ``window_s`` that starts with the
  first request after the last window ended (LiteLLM's per-minute limits):
  the whole budget comes back at once.
  Refused requests count too, as LiteLLM counts them.
* ``TokenBucket``: a rate with a burst, as hosted APIs meter a minute.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CounterState:
    """A window's state: its limit a minute, what is left, and when it is whole again."""

    per_minute: float
    remaining: float
    reset_s: float
    fixed: bool


class Counter(Protocol):
    """Something that tells whether a request may pass and what is left."""

    def take(self, now: float, cost: float = 1.0) -> float:
        """0 if ``cost`` may pass now (and count it), else seconds until it may."""
        ...

    def state(self, now: float) -> CounterState:
        """What the window has left now."""
        ...


class SlidingWindow:
    """A sliding log of what passed over the last ``window_s`` seconds (a minute by default)."""

    def __init__(self, per_minute: float, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.limit = max(1.0, math.floor(per_minute * window_s / 60.0))
        self.times: collections.deque[tuple[float, float]] = collections.deque()
        self.used = 0.0

    def _expire(self, now: float) -> None:
        while self.times and now - self.times[0][0] >= self.window_s:
            self.used -= self.times.popleft()[1]

    def take(self, now: float, cost: float = 1.0) -> float:
        """0 if ``cost`` fits in the window now (and record it), else seconds until it may."""
        self._expire(now)
        if self.used + cost <= self.limit:
            self.times.append((now, cost))
            self.used += cost
            return 0.0
        freed = self.limit - self.used
        for moment, spent in self.times:
            freed += spent
            if freed >= cost:
                return self.window_s - (now - moment)
        return self.window_s

    def wait_time(self, now: float) -> float:
        """``take`` for one request (the one-api limiter's question)."""
        return self.take(now)

    def state(self, now: float) -> CounterState:
        """Left in the window, and seconds until every entry in it has left (whole again)."""
        self._expire(now)
        reset = self.window_s - (now - self.times[-1][0]) if self.times else 0.0
        return CounterState(self.per_minute, max(0.0, self.limit - self.used), reset, False)


class FixedWindow:
    """A count per fixed window of ``window_s``, refusals counted.

    A window starts with the first request after the last one ended, as
    LiteLLM's limiter keeps it (a window start and a counter, reset together),
    so the first request of a run always meets a whole window.
    """

    def __init__(self, per_minute: float, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.limit = max(1.0, math.floor(per_minute * window_s / 60.0))
        self.start: float | None = None
        self.used = 0.0

    def take(self, now: float, cost: float = 1.0) -> float:
        """0 if ``cost`` fits in this window (counted either way), else seconds until the next."""
        start = self.start
        if start is None or now - start >= self.window_s:
            start = self.start = now
            self.used = 0.0
        self.used += cost
        if self.used <= self.limit:
            return 0.0
        return self.window_s - (now - start)

    def state(self, now: float) -> CounterState:
        """Left in this window, and seconds until the next starts (a whole one if none runs)."""
        start = self.start
        if start is None or now - start >= self.window_s:
            return CounterState(self.per_minute, self.limit, self.window_s, True)
        reset = self.window_s - (now - start)
        return CounterState(self.per_minute, max(0.0, self.limit - self.used), reset, True)


class TokenBucket:
    """A token bucket: ``per_minute`` a minute, at most ``burst_s`` seconds' worth at once."""

    def __init__(self, per_minute: float, burst_s: float) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.tokens = self.capacity
        self.updated: float | None = None

    def _refill(self, now: float) -> None:
        if self.updated is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """0 if ``cost`` may pass now (and take it), else seconds until it may."""
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate

    def wait_time(self, now: float) -> float:
        """``take`` for one request."""
        return self.take(now)

    def state(self, now: float) -> CounterState:
        """Tokens left, and seconds until the bucket is full again."""
        self._refill(now)
        reset = (self.capacity - self.tokens) / self.rate
        return CounterState(self.per_minute, math.floor(self.tokens), reset, False)
