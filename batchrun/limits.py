"""Rate limits and concurrency, per gateway key and per model, all waiting on loop timers.

A ``Limiter`` holds one ``Scope`` for the key and one per model. A scope
composes the mechanisms of ``batchrun.pacing``: a ``Window`` (concurrency),
declared ``Pacer``s (rpm, tpm), the paces a gateway announced in its
headers (read by ``batchrun.ratelimits``), a pace learned from 429s
(``AdaptiveRate``) and pauses. What a gateway's advice does:

* A budget (limit, remaining, reset) paces at its limit a minute, a hair
  below. In a continuous window (OpenAI, Anthropic) slots come back all the
  time: with nothing remaining the next slot is one interval away, never
  the whole reset. A fixed window (LiteLLM's ``reset_at``) with nothing
  remaining pauses until it starts over. Either way requests resume at the
  pace, with at most the documented burst (``Pacer``).
* A 429 stalls its own scope: the model's, unless the advice names the key.
  Its wait is the earliest the evidence supports: the advice, or sooner
  when the last headers said the window is whole again before that; then
  one probe goes, and once it succeeds the rest follow at the pace. 429s of
  requests already in flight when the pause began are not news.
* A max-parallel 429 is a cap on requests in flight: the key's window caps
  at what the gateway held; nothing pauses.

``Limiter.acquire`` takes everything a request needs, in an order that never
holds a key-wide slot while waiting for one model's pace; ``try_acquire`` is
its no-wait path for when no pace is kept and the windows have room. Each
model counts how long its requests waited on each limit, so the run can say
which limit held it back and how much of that limit it used (``held_back``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from batchrun.pacing import LATE_TOLERANCE_S, Clock
from batchrun.ratelimits import RateLimitAdvice
from batchrun.scope import Scope, ScopeLimits

__all__ = ["Limiter", "Permit", "Scope", "ScopeLimits"]

# The key's window starts with one probe per model, at most this many.
_KEY_PROBES = 3


class Shared(Protocol):
    """Limits kept outside this process (``limits.share``), taken after the local ones."""

    async def acquire(self, model: str, tokens: float) -> str:
        """Wait for a shared place and slot for one request of ``model``; its lease."""
        ...

    def release(self, lease: str) -> None:
        """Give the lease back."""

    def limited(self, model: str, retry_after: float | None, learned_rpm: float | None) -> None:
        """Tell the other processes of a 429 (the pause asked for, the pace learned)."""


class Permit:
    """One request's hold on its scopes; report how it went, then release it."""

    __slots__ = ("_estimated", "_granted", "_lease", "_scopes", "_shared")

    def __init__(
        self,
        scopes: tuple[Scope, Scope],
        estimated_tokens: float,
        granted: float,
        shared: Shared | None = None,
        lease: str = "",
    ) -> None:
        self._scopes = scopes
        self._estimated = estimated_tokens
        self._granted = granted
        self._shared = shared
        self._lease = lease
        for scope in scopes:
            scope.count(estimated_tokens, granted)

    def succeeded(
        self,
        latency_s: float,
        total_tokens: int | None,
        advice: RateLimitAdvice | None = None,
        prompt_tokens: int | None = None,
        max_output_tokens: int | None = None,
    ) -> None:
        """The request succeeded: correct the token charge, grow, read the gateway's budgets.

        A gateway that announces a token budget meters ``max_tokens`` up front
        (as OpenAI does): then the charge is the prompt plus ``max_output_tokens``,
        not the tokens used.
        """
        charged: float | None = total_tokens
        meters = advice is not None and (advice.tokens or advice.key_tokens) is not None
        if meters and prompt_tokens is not None and max_output_tokens:
            charged = prompt_tokens + max_output_tokens
        delta = (charged - self._estimated) if charged is not None else 0.0
        key, model = self._scopes
        cost = self._estimated + max(delta, 0.0)
        if advice is None:
            key.succeeded(latency_s, delta, granted=self._granted)
            model.succeeded(latency_s, delta, granted=self._granted)
            return
        key_budgets = (advice.key_requests, advice.key_tokens)
        key.succeeded(latency_s, delta, key_budgets, cost, self._granted)
        model.succeeded(latency_s, delta, (advice.requests, advice.tokens), cost, self._granted)

    def rate_limited(self, advice: RateLimitAdvice | None) -> None:
        """The request met a 429: the scope it names stalls (the model's unless the key's).

        A max-parallel refusal caps the key's window at the requests the gateway
        held in flight (those out now, less this one) and pauses nothing.
        """
        key, model = self._scopes
        if advice is not None and advice.concurrency:
            key.rate_limited += 1
            key.window.cap_at(key.window.in_use - 1)
            return
        if advice is not None:
            key.observe(advice.key_requests, "requests", 1.0)
            model.observe(advice.requests, "requests", 1.0)
        scope = key if advice is not None and advice.key_wide else model
        scope.limited(advice, self._granted)
        if self._shared is not None:
            wait = advice.retry_after_s if advice is not None else None
            self._shared.limited(model.name, wait, model.pace_per_minute)

    def release(self) -> None:
        """Give the places in both windows (and a shared lease) back."""
        key, model = self._scopes
        key.window.release()
        model.window.release()
        if self._shared is not None:
            self._shared.release(self._lease)


class Limiter:
    """The limits of a run: one key scope, one scope per model."""

    def __init__(
        self,
        key: ScopeLimits,
        models: dict[str, ScopeLimits],
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        shared: Shared | None = None,
    ) -> None:
        self._clock = clock
        self.shared = shared
        self.key = Scope("key", key, clock, initial=min(len(models), _KEY_PROBES))
        self.models = {name: Scope(name, lim, clock) for name, lim in models.items()}
        self._sleep = sleep

    def try_acquire(self, model: str, estimated_tokens: float) -> Permit | None:
        """A permit at once when neither scope has a pace to keep and both windows have room.

        None means ``acquire`` must wait; nothing was taken.
        """
        scope = self.models[model]
        key = self.key
        if self.shared is not None:
            return None  # a shared slot is always waited for
        if not (scope.unpaced() and key.unpaced() and scope.window.try_take()):
            return None
        if not key.window.try_take():
            scope.window.release()
            return None
        return Permit((key, scope), estimated_tokens, self._clock())

    def trust(self, probe_grace_s: float) -> None:
        """The key is known to be good: a probe out longer than ``probe_grace_s`` opens its window.

        Gateways refuse a bad key, a model without a channel or an empty balance
        before calling upstream, so those answers come back quickly; a probe
        still out after that is being answered, and the others need not wait
        for it.
        """
        for scope in (self.key, *self.models.values()):
            scope.window.probe_grace = probe_grace_s

    async def acquire(self, model: str, estimated_tokens: float) -> Permit:
        """Wait for a place for one request of ``model``: windows, pauses and pace.

        The model's pace is waited for before a key-wide place is taken, so one
        slow model never holds places the others could use. Call
        ``Permit.release`` when the request is done.
        """
        scope = self.models[model]
        await self._enter(scope, estimated_tokens, scope, "")
        try:
            await self._enter(self.key, estimated_tokens, scope, "key ")
        except BaseException:
            scope.window.release()
            raise
        if self.shared is None:
            return Permit((self.key, scope), estimated_tokens, self._clock())
        try:  # the places other processes share come last, after every local wait
            lease = await self.shared.acquire(model, estimated_tokens)
        except BaseException:
            self.key.window.release()
            scope.window.release()
            raise
        return Permit((self.key, scope), estimated_tokens, self._clock(), self.shared, lease)

    async def _enter(self, scope: Scope, tokens: float, model: Scope, prefix: str) -> None:
        """Take a place in ``scope``'s window and its pace; the waits are booked on ``model``.

        A pause is waited out before a place is taken, and a place taken when a
        pause begins is given back: after a pause the requests go as the window
        lets them (one probe first), never all those that sat waiting.
        """
        while True:
            while scope.paused_until > self._clock():
                pause = scope.paused_until - self._clock()
                model.waited[prefix + scope.pause_cause] += pause
                await self._sleep(pause)
            started = self._clock()
            await scope.window.acquire()
            model.waited[prefix + "concurrency"] += self._clock() - started
            try:
                if await self._paced(scope, tokens, model, prefix):
                    return
            except BaseException:
                scope.window.release()
                raise
            scope.window.release()

    async def _paced(self, scope: Scope, tokens: float, model: Scope, prefix: str) -> bool:
        """Sleep until ``scope``'s pace lets the request go; False if a pause began meanwhile."""
        async with scope.pace_lock:
            if scope.paused_until > self._clock():
                return False
            delay, cause = scope.reserve(tokens)
            if delay > 0:
                due = self._clock() + delay
                model.waited[prefix + cause] += delay
                await self._sleep(delay)
                if scope.paused_until > self._clock():
                    return False
                late = self._clock() - due
                if late > LATE_TOLERANCE_S:
                    scope.went_late(late, tokens)
        return True

    def held_back(self, model: str) -> tuple[str | None, float | None]:
        """Which limit ``model``'s requests waited on longest, and the share of it they used."""
        scope = self.models[model]
        waited = {cause: seconds for cause, seconds in scope.waited.items() if seconds > 0}
        if not waited:
            return None, None
        cause = max(waited, key=lambda name: waited[name])
        owner = self.key if cause.startswith("key ") else scope
        return cause, owner.used(cause.removeprefix("key "))
