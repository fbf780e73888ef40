"""One scope of the limiter (the key, or one model): its window, paces, pauses and tally.

A ``Scope`` composes the mechanisms of ``batchrun.pacing`` with what the
gateway announced (``batchrun.ratelimits``): see ``batchrun.limits`` for
what each kind of advice does. It also books how long its requests waited
on each limit and what they took, for the run's summary (``used``).
"""

from __future__ import annotations

import asyncio
import collections
import math
from dataclasses import dataclass

from batchrun.pacing import (
    LATE_TOLERANCE_S,
    WINDOW_ADVICE_S,
    AdaptiveRate,
    Clock,
    Pacer,
    Window,
)
from batchrun.ratelimits import Budget, RateLimitAdvice

# A latency this many times its baseline shrinks the window (at most once a second) ...
_LATENCY_FACTOR = 3.0
_LATENCY_HOLD_S = 1.0
# ... measured against a baseline taken only after this many answers (or a window's worth).
_LATENCY_WARMUP = 20
# The longest a 429's advice may pause a scope (as the client caps Retry-After).
MAX_PAUSE_S = 120.0
# A limit the gateway announced is paced at this share of it; a token budget is spent in
# lumps of a whole request (prompt + max_tokens), so its share leaves a little more room.
HEADER_MARGIN = 0.99
TOKEN_MARGIN = 0.98
# Headers older than this are no evidence of how soon a window is whole again.
_EVIDENCE_S = 60.0
# A continuous window with nothing left and no limit given: wait at most this long.
_UNKNOWN_SLOT_S = 1.0


@dataclass(frozen=True)
class ScopeLimits:
    """Declared limits of one scope; None means not declared.

    ``burst``: requests that may go at once above a pace after a quiet spell.
    """

    concurrency: int
    rpm: float | None = None
    tpm: float | None = None
    adaptive: bool = True
    burst: int = 1


class Scope:
    """Everything that limits one scope: a window, declared pacers, a learned pace, pauses."""

    def __init__(self, name: str, limits: ScopeLimits, clock: Clock, initial: int = 1) -> None:
        self.name = name
        self.window = Window(
            limits.concurrency,
            initial=initial,
            slow_start=limits.adaptive and not limits.rpm,
            clock=clock,
        )
        self.burst = limits.burst
        self.rpm = Pacer(limits.rpm, clock, limits.burst) if limits.rpm else None
        self.tpm = Pacer(limits.tpm, clock, limits.burst) if limits.tpm else None
        self.adaptive = AdaptiveRate(clock) if limits.rpm is None and limits.adaptive else None
        # Paces the gateway announced ("requests", "tokens") and the limits they came from.
        self.announced: dict[str, Pacer] = {}
        self.announced_limit: dict[str, float] = {}
        self.paused_until = -math.inf
        self.pause_cause = "429s"
        self.paused_at = -math.inf
        self.rate_limited = 0
        # Seconds requests waited on each limit, and what they took from it.
        self.waited: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.sent = 0
        self.tokens = 0.0
        self.first_sent: float | None = None
        self.last_sent: float | None = None
        self._clock = clock
        # One request at a time waits for the pace, so each slot is taken from real time.
        self.pace_lock = asyncio.Lock()
        # When the last headers said the window is whole again, and when they came.
        self._whole_at: tuple[float, float] | None = None
        self._probing = False
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
            and not self.announced
            and self.window.ramp is None
            and (self.adaptive is None or self.adaptive.pacer is None)
            and self.paused_until <= self._clock()
        )

    def reserve(self, tokens: float) -> tuple[float, str]:
        """Reserve pace for one request of ``tokens``: the seconds to wait, and on what limit."""
        now = self._clock()
        pause = self.paused_until
        wait, cause = pause - now, self.pause_cause
        for name, pacer, cost in self._pacers(tokens):
            delay = pacer.reserve(cost, pause)
            if delay > wait:
                wait, cause = delay, name
        return max(0.0, wait), cause

    def _pacers(self, tokens: float) -> list[tuple[str, Pacer, float]]:
        """Each pace in force, named, with what one request of ``tokens`` costs it."""
        pacers = (
            ("declared rpm", self.rpm, 1.0),
            ("declared tpm", self.tpm, tokens),
            ("gateway rpm", self.announced.get("requests"), 1.0),
            ("gateway tpm", self.announced.get("tokens"), tokens),
            ("429s", self.adaptive.pacer if self.adaptive is not None else None, 1.0),
            ("concurrency", self.window.ramp, 1.0),
        )
        return [(name, pacer, cost) for name, pacer, cost in pacers if pacer is not None]

    def went_late(self, late_s: float, tokens: float) -> None:
        """The request went ``late_s`` after its slot (a stalled loop): move the schedule by
        the lateness beyond ``LATE_TOLERANCE_S``, so the slots missed are not made up in a
        burst and a stall costs only the time beyond the tolerance."""
        went = self._clock() - LATE_TOLERANCE_S
        for _, pacer, cost in self._pacers(tokens):
            pacer.hold_until(went + cost * 60.0 / pacer.per_minute)

    def count(self, tokens: float, at: float) -> None:
        """One request goes at ``at`` with ``tokens`` charged."""
        self.sent += 1
        self.tokens += tokens
        self.first_sent = at if self.first_sent is None else self.first_sent
        self.last_sent = at

    def pause(self, until: float, cause: str) -> None:
        """No request before ``until``, on account of ``cause``."""
        if until > self.paused_until:
            self.paused_until = until
            self.pause_cause = cause
            self.paused_at = self._clock()

    def succeeded(
        self,
        latency_s: float,
        token_delta: float,
        budgets: tuple[Budget | None, Budget | None] = (None, None),
        cost: float = 0.0,
        granted: float = math.inf,
    ) -> None:
        """Feedback from a success: open, grow, correct tokens, read the budgets announced.

        A success of a request let go after the last pause began is the probe's:
        the window goes back to what it was before the pause.
        """
        self.tokens += token_delta
        for pacer in (self.tpm, self.announced.get("tokens")):
            if pacer is not None and token_delta:
                pacer.correct(token_delta)
        if self.adaptive is not None:
            self.adaptive.on_success(latency_s)
        if granted > self.paused_at:
            self._probing = False
            self.window.restore()
        if not self.window.opened or self.window.overdue:
            self.window.open(latency_s)
        elif self.window.limit < self.window.cap:
            self.window.grow()
        self.window.spread(latency_s)
        requests, tokens = budgets
        self.observe(requests, "requests", 1.0)
        self.observe(tokens, "tokens", cost)
        if self._watch:
            self._watch_latency(latency_s)

    def observe(self, budget: Budget | None, unit: str, cost: float) -> None:
        """Pace by a budget the gateway announced; hold when it has too little left for ``cost``.

        A continuous window gives a slot back every interval, so the hold is
        until enough has come back, never the whole reset; a fixed window
        starts over only at its reset, so the hold is until then.
        """
        if budget is None:
            return
        now = self._clock()
        pacer = self.announced.get(unit)
        if budget.limit:
            self.announced_limit[unit] = budget.limit
            rate = budget.limit * (HEADER_MARGIN if unit == "requests" else TOKEN_MARGIN)
            if pacer is None:
                pacer = self.announced[unit] = Pacer(rate, self._clock, self.burst)
                # Spaced from the requests already paced, not from a free start.
                declared = self.rpm if unit == "requests" else self.tpm
                if declared is not None:
                    pacer.hold_until(declared.next_free)
                elif unit == "requests" and self.last_sent is not None:
                    pacer.hold_until(self.last_sent + 60.0 / rate)
            elif pacer.per_minute != rate:
                pacer.set_rate(rate)
        if budget.reset_s is None:
            return
        self._whole_at = (now + budget.reset_s, now)
        if budget.remaining is None or budget.remaining >= cost:
            return
        if budget.fixed:
            self.pause(now + budget.reset_s, f"gateway {unit[0]}pm")
            return
        missing = cost - budget.remaining
        if budget.limit:
            gap = missing * 60.0 / budget.limit
        else:
            gap = min(budget.reset_s, _UNKNOWN_SLOT_S)
        if pacer is not None:
            pacer.hold_until(now + min(gap, budget.reset_s))
        else:
            self.pause(now + min(gap, budget.reset_s), f"gateway {unit[0]}pm")

    def limited(self, advice: RateLimitAdvice | None, granted_at: float) -> None:
        """Feedback from a 429: cut the window and the pace; pause as long as the evidence says.

        ``granted_at``: when the refused request was let go. One let go before
        the current pause began was in flight at it: its 429 is not news.
        """
        self.rate_limited += 1
        now = self._clock()
        if granted_at <= self.paused_at and self.paused_until > now:
            return
        cut = self.adaptive.on_rate_limited() if self.adaptive is not None else True
        if cut:
            self.window.shrink(0.5)
        wait = advice.retry_after_s if advice is not None else None
        if wait is None:
            return
        wait = min(wait, MAX_PAUSE_S)
        until = self._earliest(now, wait)
        self._probing = until < now + wait
        # After the pause one request goes first; the rest follow once it succeeds.
        self.window.probe()
        self.pause(until, "429s")
        if self.adaptive is not None and until - now >= WINDOW_ADVICE_S:
            self.adaptive.learn_window(until)

    def _earliest(self, now: float, wait: float) -> float:
        """When to try again after a 429 asking for ``wait``: sooner if the headers said so.

        A probe that failed after such a shortened wait has had its chance: then
        the advice holds in full.
        """
        if self._whole_at is None or self._probing:
            return now + wait
        whole_at, seen_at = self._whole_at
        if now - seen_at > _EVIDENCE_S:
            return now + wait
        return min(now + wait, max(whole_at, now))

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
            self._latency_hold = now + _LATENCY_HOLD_S
            self.window.shrink(0.9)

    @property
    def pace_per_minute(self) -> float | None:
        """The pace in force: declared, announced by the gateway, or learned."""
        if self.rpm is not None:
            return self.rpm.per_minute
        if "requests" in self.announced_limit:
            return self.announced_limit["requests"]
        return self.adaptive.per_minute if self.adaptive is not None else None

    def used(self, cause: str) -> float | None:
        """The share of the limit named ``cause`` this scope's requests used, None if unknown."""
        if self.first_sent is None or self.last_sent is None or self.sent < 2:
            return None
        busy = self.last_sent - self.first_sent
        if busy <= 0:
            return None
        if cause.endswith("concurrency"):
            return self.window.busy_s / (self.window.cap * busy)
        per_minute = (self.sent - 1) / busy * 60.0
        tokens_per_minute = self.tokens * (self.sent - 1) / self.sent / busy * 60.0
        limit = {
            "declared rpm": self.rpm.per_minute if self.rpm else None,
            "declared tpm": self.tpm.per_minute if self.tpm else None,
            "gateway rpm": self.announced_limit.get("requests"),
            "gateway tpm": self.announced_limit.get("tokens"),
            "429s": self.adaptive.per_minute if self.adaptive else None,
        }.get(cause)
        if not limit:
            return None
        return (tokens_per_minute if cause.endswith("tpm") else per_minute) / limit
