"""Rate limits and concurrency, per gateway key and per model, all waiting on loop timers.

Three mechanisms, composed per scope (the key, and each model under it):

* ``Pacer``: a declared requests- or tokens-per-minute limit, kept with the
  generic cell rate algorithm: each request reserves the next free slot on
  a virtual schedule and sleeps until it. Tokens are charged up front (the
  estimate) and corrected once the usage is known.
* ``Window``: a concurrency limit that can move. It starts at one request
  (a probe: a bad key or a model without a channel costs one request, not a
  burst). On the first success it opens to its cap, or, when the limits are
  adaptive and round trips short, to a slow start that doubles every round
  trip until the cap or the first 429. Once the key is known to be good (the
  model list answered), a probe still unanswered after a short grace opens
  the window too: quick refusals are over by then. It halves on a 429 and
  grows back by one per window of successes (AIMD), and shrinks a little
  when latency climbs well above its baseline.
* ``AdaptiveRate``: when no rate is declared, the rate a gateway really
  accepts is learned from its 429s: when over-driven, a gateway accepts
  exactly its limit, so the accepted rate measured over the second before
  a 429 is the limit. The pace is set just below it and creeps up 2% a
  second until the next 429. A first cut made on less than a second of
  history is looked at again once the requests then in flight are back.

``Limiter.acquire`` takes everything a request needs, in an order that never
holds a key-wide slot while waiting for one model's pace; ``try_acquire`` is
its no-wait path for when no pace is kept and the windows have room.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

Clock = Callable[[], float]

# AdaptiveRate: fraction of the measured accepted rate to pace at after a 429,
# growth per second while no 429 comes, and the pause between two cuts.
_CUT_FACTOR = 0.92
# A cut within a second of the previous one did not suffice: cut deeper.
_DEEP_CUT_FACTOR = 0.85
# After a deep cut the pace may sit below the limit: recover a little faster.
_RECOVERY_GROWTH_PER_S = 0.05
_GROWTH_PER_S = 0.02
_HOLD_S = 1.0
_MIN_HOLD_S = 0.05
_MEASURE_S = 1.0
# Window: where an adaptive window starts after its probe (slow start), and the
# longest a slow start may be expected to take before the window opens at once.
_SLOW_START = 4
_SLOW_START_BUDGET_S = 1.0
# The key's window starts with one probe per model, at most this many.
_KEY_PROBES = 3
# Window: a latency this many times its baseline shrinks the window.
_LATENCY_FACTOR = 3.0
# ... measured against a baseline taken only after this many answers (or a window's worth).
_LATENCY_WARMUP = 20


class Pacer:
    """A requests- or tokens-per-minute limit as a virtual schedule (GCRA)."""

    def __init__(self, per_minute: float, clock: Clock) -> None:
        self.per_minute = per_minute
        self._interval = 60.0 / per_minute
        self._clock = clock
        self._next = -math.inf

    def reserve(self, cost: float = 1.0) -> float:
        """Take the next slot for ``cost`` units; return how long to wait for it."""
        now = self._clock()
        start = max(now, self._next)
        self._next = start + cost * self._interval
        return start - now

    def correct(self, delta: float) -> None:
        """Charge ``delta`` more units (negative: give back) to a request already paced."""
        self._next += delta * self._interval

    def set_rate(self, per_minute: float) -> None:
        """Change the pace from now on."""
        self.per_minute = per_minute
        self._interval = 60.0 / per_minute


class Window:
    """A concurrency limit that can grow and shrink; waiters are woken, never poll."""

    def __init__(self, cap: int, initial: int = 1, slow_start: bool = False) -> None:
        self.cap = cap
        self.limit = float(min(initial, cap))
        self.in_use = 0
        self.opened = initial >= cap
        self.slow_start = slow_start
        # Seconds a probe may be out unanswered before the window opens anyway (None: wait).
        self.probe_grace: float | None = None
        self._probe_timer: asyncio.TimerHandle | None = None
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_take(self) -> bool:
        """Take a free place if there is one now, without waiting."""
        if self.in_use < int(self.limit) and not self._waiters:
            self.in_use += 1
            if not self.opened:
                self._probing()
            return True
        return False

    async def acquire(self) -> None:
        """Wait for a free place in the window."""
        if self.try_take():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(future)
            raise

    def release(self) -> None:
        """Give a place back and wake whoever fits."""
        self.in_use -= 1
        if self._probe_timer is not None and self.in_use == 0:
            # The probes are back, however they went: no open on their account.
            self._probe_timer.cancel()
            self._probe_timer = None
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < max(1, int(self.limit)):
            future = self._waiters.popleft()
            if not future.done():
                self.in_use += 1
                if not self.opened:
                    self._probing()
                future.set_result(None)

    def _probing(self) -> None:
        """A probe went out: open the window if it is still out after the grace."""
        if self.probe_grace is not None and self._probe_timer is None:
            loop = asyncio.get_running_loop()
            self._probe_timer = loop.call_later(self.probe_grace, self._probe_overdue)

    def _probe_overdue(self) -> None:
        """No answer within the grace: not a quick refusal, so the endpoint is slow; open.

        A slow start is for endpoints that answer within the grace; for a slow
        one it would cost more round trips than the burst it avoids.
        """
        self._probe_timer = None
        if not self.opened and self.in_use > 0:
            self.opened = True
            self.slow_start = False
            self.limit = float(self.cap)
            self._wake()

    def open(self, latency_s: float) -> None:
        """The probe succeeded: open to the cap, or to a slow start that doubles each round.

        A slow start costs about log2(cap / 4) round trips; when that is more than
        a second the window opens at once (a 429 then costs less than the wait).
        """
        if not self.opened:
            self.opened = True
            rounds = math.log2(max(self.cap / _SLOW_START, 1.0))
            if self.slow_start and rounds * latency_s <= _SLOW_START_BUDGET_S:
                self.limit = float(min(self.cap, _SLOW_START))
            else:
                self.slow_start = False
                self.limit = float(self.cap)
            self._wake()

    def grow(self) -> None:
        """One more success: +1 a success in slow start, else +1 per window of successes."""
        if self.limit < self.cap:
            step = 1.0 if self.slow_start else 1.0 / max(self.limit, 1.0)
            self.limit = min(float(self.cap), self.limit + step)
            self._wake()

    def shrink(self, factor: float) -> None:
        """Cut the window (never below one place); slow start ends."""
        self.opened = True
        self.slow_start = False
        self.limit = max(1.0, self.limit * factor)


class AdaptiveRate:
    """A pace learned from 429s when none was declared."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.pacer: Pacer | None = None
        self._accepted: collections.deque[float] = collections.deque()
        self._hold_until = -math.inf
        self._last_growth = clock()
        self._first_success: float | None = None
        self._growth = _GROWTH_PER_S
        self._latency: float | None = None
        self._last_cut = -math.inf
        self._provisional_until: float | None = None

    @property
    def per_minute(self) -> float | None:
        """The learned pace, or None while no 429 was met."""
        return self.pacer.per_minute if self.pacer else None

    def on_success(self, latency_s: float) -> None:
        """Record an accepted request; let the pace creep up."""
        now = self._clock()
        self._latency = (
            latency_s if self._latency is None else 0.8 * self._latency + 0.2 * latency_s
        )
        if self._first_success is None:
            self._first_success = now
        self._accepted.append(now)
        while self._accepted and now - self._accepted[0] >= _MEASURE_S:
            self._accepted.popleft()
        if self.pacer is not None and self._provisional_until is not None:
            if now >= self._provisional_until:
                # The requests in flight at the first cut are back: count them in.
                self._provisional_until = None
                estimate = _CUT_FACTOR * len(self._accepted) / _MEASURE_S * 60.0
                self.pacer.set_rate(max(self.pacer.per_minute, estimate))
        elif self.pacer is not None:
            elapsed = now - self._last_growth
            self.pacer.set_rate(self.pacer.per_minute * (1 + self._growth * elapsed))
        self._last_growth = now

    def on_rate_limited(self) -> bool:
        """A 429: pace just below the rate the gateway accepted. True if the pace was cut."""
        now = self._clock()
        if now < self._hold_until:
            return False
        # 429s of requests already in flight at the cut are not news: ignore them for about
        # a round trip. Later ones mean the cut was not deep enough.
        latency = self._latency if self._latency is not None else _HOLD_S
        self._hold_until = now + min(_HOLD_S, max(_MIN_HOLD_S, 2.0 * latency))
        while self._accepted and now - self._accepted[0] >= _MEASURE_S:
            self._accepted.popleft()
        if len(self._accepted) < 2:
            # Nothing accepted lately: no rate to learn from; the window and backoff act.
            return True
        # Over a whole second, so a burst the gateway allowed at the start does not count double.
        accepted_per_minute = max(len(self._accepted) / _MEASURE_S * 60.0, 6.0)
        target = _CUT_FACTOR * accepted_per_minute
        history = now - (self._first_success if self._first_success is not None else now)
        self._growth = _GROWTH_PER_S
        if history < _MEASURE_S:
            # Less than a second of history: requests still in flight were accepted too;
            # look again once they are back.
            self._provisional_until = self._hold_until
        deep = now - self._last_cut < _HOLD_S
        factor = _DEEP_CUT_FACTOR if deep else _CUT_FACTOR
        self._last_cut = now
        if deep and self._growth == _GROWTH_PER_S:
            self._growth = _RECOVERY_GROWTH_PER_S
        if self.pacer is None:
            self.pacer = Pacer(target, self._clock)
        else:
            ceiling = min(self.pacer.per_minute, accepted_per_minute)
            self.pacer.set_rate(max(6.0, factor * ceiling))
        self._last_growth = now
        return True


@dataclass(frozen=True)
class ScopeLimits:
    """Declared limits of one scope; None means not declared."""

    concurrency: int
    rpm: float | None = None
    tpm: float | None = None
    adaptive: bool = True


class Scope:
    """Everything that limits one scope: a window, declared pacers, a learned pace, pauses."""

    def __init__(self, name: str, limits: ScopeLimits, clock: Clock, initial: int = 1) -> None:
        self.name = name
        self.window = Window(
            limits.concurrency, initial=initial, slow_start=limits.adaptive and not limits.rpm
        )
        self.rpm = Pacer(limits.rpm, clock) if limits.rpm else None
        self.tpm = Pacer(limits.tpm, clock) if limits.tpm else None
        self.adaptive = AdaptiveRate(clock) if limits.rpm is None and limits.adaptive else None
        self.paused_until = -math.inf
        self.rate_limited = 0
        self._clock = clock
        self._latency_base: float | None = None
        self._latency_avg: float | None = None
        self._latency_samples = 0
        self._latency_hold = -math.inf
        # Rising latency shrinks the window only where the limits adapt.
        self._watch = limits.adaptive

    def unpaced(self) -> bool:
        """Whether a request may go without reserving pace: nothing declared, learned or paused."""
        return (
            self.rpm is None
            and self.tpm is None
            and (self.adaptive is None or self.adaptive.pacer is None)
            and self.paused_until <= self._clock()
        )

    def reserve(self, tokens: float) -> float:
        """Reserve pace for one request of ``tokens``; the seconds to wait."""
        wait = max(0.0, self.paused_until - self._clock())
        for pacer, cost in ((self.rpm, 1.0), (self.tpm, tokens)):
            if pacer is not None:
                wait = max(wait, pacer.reserve(cost))
        if self.adaptive is not None and self.adaptive.pacer is not None:
            wait = max(wait, self.adaptive.pacer.reserve())
        return wait

    def succeeded(self, latency_s: float, token_delta: float) -> None:
        """Feedback from a success: open, grow, correct tokens, watch latency (if adaptive)."""
        if self.tpm is not None and token_delta:
            self.tpm.correct(token_delta)
        if self.adaptive is not None:
            self.adaptive.on_success(latency_s)
        if not self.window.opened:
            self.window.open(latency_s)
        elif self.window.limit < self.window.cap:
            self.window.grow()
        if self._watch:
            self._watch_latency(latency_s)

    def limited(self, retry_after: float | None) -> None:
        """Feedback from a 429: pause if told how long, cut the window and the pace."""
        self.rate_limited += 1
        now = self._clock()
        if retry_after is not None:
            self.paused_until = max(self.paused_until, now + retry_after)
        cut = self.adaptive.on_rate_limited() if self.adaptive is not None else True
        if cut:
            self.window.shrink(0.5)

    def hint(self, remaining: int | None, reset_s: float | None) -> None:
        """``x-ratelimit-remaining`` at 0: wait for the reset the gateway announced."""
        if remaining == 0 and reset_s is not None:
            self.paused_until = max(self.paused_until, self._clock() + reset_s)

    def _watch_latency(self, latency_s: float) -> None:
        avg = latency_s if self._latency_avg is None else 0.9 * self._latency_avg + 0.1 * latency_s
        self._latency_avg = avg
        self._latency_samples += 1
        if self._latency_samples < max(_LATENCY_WARMUP, int(self.window.limit)):
            # The first answers of a burst are its fastest: no baseline from them.
            return
        self._latency_base = avg if self._latency_base is None else min(self._latency_base, avg)
        now = self._clock()
        if (
            self._latency_base > 0.05
            and avg > _LATENCY_FACTOR * self._latency_base
            and now >= self._latency_hold
        ):
            self._latency_hold = now + _HOLD_S
            self.window.shrink(0.9)

    @property
    def pace_per_minute(self) -> float | None:
        """The pace in force: declared, or learned."""
        if self.rpm is not None:
            return self.rpm.per_minute
        return self.adaptive.per_minute if self.adaptive is not None else None


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

    __slots__ = ("_estimated", "_lease", "_scopes", "_shared")

    def __init__(
        self,
        scopes: tuple[Scope, Scope],
        estimated_tokens: float,
        shared: Shared | None = None,
        lease: str = "",
    ) -> None:
        self._scopes = scopes
        self._estimated = estimated_tokens
        self._shared = shared
        self._lease = lease

    def succeeded(
        self,
        latency_s: float,
        total_tokens: int | None,
        remaining: int | None = None,
        reset_s: float | None = None,
    ) -> None:
        """The request succeeded: correct the token charge and grow."""
        delta = (total_tokens - self._estimated) if total_tokens is not None else 0.0
        for scope in self._scopes:
            scope.succeeded(latency_s, delta)
        self._scopes[-1].hint(remaining, reset_s)

    def rate_limited(self, retry_after: float | None) -> None:
        """The request met a 429."""
        for scope in self._scopes:
            scope.limited(retry_after)
        if self._shared is not None:
            model = self._scopes[-1]
            self._shared.limited(model.name, retry_after, model.pace_per_minute)

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
            return None
        if not (scope.unpaced() and key.unpaced() and scope.window.try_take()):
            return None
        if not key.window.try_take():
            scope.window.release()
            return None
        return Permit((key, scope), estimated_tokens)

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
        await scope.window.acquire()
        try:
            await self._wait(scope, estimated_tokens)
            await self.key.window.acquire()
        except BaseException:
            scope.window.release()
            raise
        try:
            await self._wait(self.key, estimated_tokens)
            if self.shared is not None:
                lease = await self.shared.acquire(model, estimated_tokens)
                return Permit((self.key, scope), estimated_tokens, self.shared, lease)
        except BaseException:
            self.key.window.release()
            scope.window.release()
            raise
        return Permit((self.key, scope), estimated_tokens)

    async def _wait(self, scope: Scope, tokens: float) -> None:
        delay = scope.reserve(tokens)
        while delay > 0:
            await self._sleep(delay)
            # A Retry-After that arrived while asleep moves the pause further.
            delay = max(0.0, scope.paused_until - self._clock())


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go-style duration (``1m30.2s``, ``12ms``, ``6m0s``), or None."""
    if not text:
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
