"""The three mechanisms a limiter scope is made of: a pace, a window, a learned pace.

* ``Pacer``: a requests- or tokens-per-minute limit, kept with the generic
  cell rate algorithm: each request reserves the next free slot on a virtual
  schedule and sleeps until it. Tokens are charged up front (the estimate)
  and corrected once the usage is known. Idle time is never saved up beyond
  the documented burst (``burst`` requests at once, 1 by default), and a
  pause moves the schedule: after any wait the requests resume at the pace,
  never in a burst of the slots missed.
* ``Window``: a concurrency limit that can move. It starts at one request
  (a probe: a bad key or a model without a channel costs one request, not a
  burst). On the first success it opens to its cap, or, when the limits are
  adaptive and round trips short, to a slow start that doubles every round
  trip until the cap or the first 429; its requests are spread evenly over
  each round trip (at least 100 ms: ``ramp``), never sent in bunches. Once
  the key is known to be good (the model list answered), a probe still
  unanswered after a short grace opens the window too: quick refusals are
  over by then. It halves on a 429 and grows back by one per window of
  successes (AIMD), and shrinks a little when latency climbs well above its
  baseline. A gateway's max-parallel refusal lowers its cap to what the
  gateway held in flight.
* ``AdaptiveRate``: when no rate is declared, the rate a gateway really
  accepts is learned from its 429s: when over-driven, a gateway accepts
  exactly its limit, so the accepted rate measured over the second before
  a 429 is the limit. The pace is set just below it and creeps up 2% a
  second until the next 429. A first cut made on less than a second of
  history is looked at again once the requests then in flight are back.
  A 429 that asks for a long wait marks a fixed window (per minute, say):
  then the budget is learned instead, the requests accepted in the window,
  and paced over the window's length, with no creeping up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import Callable

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
# The shortest round trip a slow start's ramp is spread over: a busy client takes a few
# milliseconds to read a refusal, so sends spread thinner than this would still bunch.
_MIN_ROUND_TRIP_S = 0.1
# The key's window starts with one probe per model, at most this many.
_KEY_PROBES = 3
# AdaptiveRate: a 429 asking for at least this wait marks a fixed window, whose budget is learned.
WINDOW_ADVICE_S = 3.0
# A request that goes this much after its slot (the loop stalled) keeps the schedule; one
# later than that moves it by the lateness beyond this, never by the whole.
LATE_TOLERANCE_S = 0.02


class Pacer:
    """A requests- or tokens-per-minute limit as a virtual schedule (GCRA).

    ``burst``: how many requests may go at once after an idle spell (1: none
    beyond the pace). No one-second interval sees more than the pace plus it,
    give or take a request sent up to ``LATE_TOLERANCE_S`` late (a stalled
    loop): the schedule keeps that much of a delay, so a stall costs only
    what is beyond it (``Scope.went_late``).
    """

    def __init__(self, per_minute: float, clock: Clock, burst: int = 1) -> None:
        self.per_minute = per_minute
        self.burst = max(1, burst)
        self._interval = 60.0 / per_minute
        self._clock = clock
        self._next = -math.inf

    def reserve(self, cost: float = 1.0, not_before: float = -math.inf) -> float:
        """Take the next slot for ``cost`` units, none before ``not_before``; the wait for it."""
        now = self._clock()
        earliest = max(now, not_before)
        due = max(self._next, earliest)
        start = max(earliest, due - (self.burst - 1) * self._interval)
        self._next = due + cost * self._interval
        return start - now

    def correct(self, delta: float) -> None:
        """Charge ``delta`` more units (negative: give back) to a request already paced."""
        self._next += delta * self._interval

    @property
    def next_free(self) -> float:
        """When the next slot is free (without a burst)."""
        return self._next

    def hold_until(self, moment: float) -> None:
        """No slot before ``moment`` (the gateway said its budget is spent until then)."""
        self._next = max(self._next, moment)

    def set_rate(self, per_minute: float) -> None:
        """Change the pace from now on."""
        self.per_minute = per_minute
        self._interval = 60.0 / per_minute


class Window:
    """A concurrency limit that can grow and shrink; waiters are woken, never poll."""

    def __init__(
        self, cap: int, initial: int = 1, slow_start: bool = False, clock: Clock = time.monotonic
    ) -> None:
        self.cap = cap
        self.limit = float(min(initial, cap))
        self._in_use = 0
        self._clock = clock
        # In-use seconds (the integral of in_use over time), and when it last changed.
        self.busy_s = 0.0
        self._changed: float | None = None
        # The limit to go back to once a probe after a pause succeeds (None: no probe out).
        self._probe_restore: float | None = None
        self.opened = initial >= cap
        # Opened by an overdue probe, to be judged again when the probe is back.
        self.overdue = False
        self.slow_start = slow_start
        # Seconds a probe may be out unanswered before the window opens anyway (None: wait).
        self.probe_grace: float | None = None
        # A slow start's pace (its window spread over a round trip), and the round trip.
        self.ramp: Pacer | None = None
        self._round_trip: float | None = None
        self._probe_timer: asyncio.TimerHandle | None = None
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def in_use(self) -> int:
        """Places taken now."""
        return self._in_use

    @in_use.setter
    def in_use(self, value: int) -> None:
        now = self._clock()
        if self._changed is not None:
            self.busy_s += self._in_use * (now - self._changed)
        self._changed = now
        self._in_use = value

    def cap_at(self, places: int) -> None:
        """The gateway holds at most ``places`` in flight: never more from now on."""
        self.cap = max(1, min(self.cap, places))
        self.limit = min(self.limit, float(self.cap))
        if self._probe_restore is not None:
            self._probe_restore = min(self._probe_restore, self.limit)

    def probe(self) -> None:
        """One request only until one succeeds, then back to the limit before (``restore``)."""
        if self._probe_restore is None:
            self._probe_restore = self.limit
        self.limit = 1.0

    def restore(self) -> None:
        """The probe succeeded: the limit before it, at once."""
        if self._probe_restore is not None:
            self.limit, self._probe_restore = self._probe_restore, None
            self._wake()

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

        An adaptive window opens to its slow start (a burst at the cap would meet
        a small per-window budget with as many 429s); once the probe is back with
        its round trip, ``open`` judges again whether a slow start is worth it.
        """
        self._probe_timer = None
        if not self.opened and self.in_use > 0:
            self.opened = True
            self.overdue = self.slow_start
            self.limit = float(min(self.cap, _SLOW_START) if self.slow_start else self.cap)
            self._wake()

    def open(self, latency_s: float) -> None:
        """The probe succeeded: open to the cap, or to a slow start that doubles each round.

        A slow start costs about log2(cap / 4) round trips; when that is more than
        a second the window opens at once (a 429 then costs less than the wait).
        """
        if not self.opened or self.overdue:
            self.opened = True
            self.overdue = False
            rounds = math.log2(max(self.cap / _SLOW_START, 1.0))
            if self.slow_start and rounds * latency_s <= _SLOW_START_BUDGET_S:
                self.limit = max(self.limit, float(min(self.cap, _SLOW_START)))
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

    def spread(self, latency_s: float) -> None:
        """In a slow start, pace the window's requests evenly over a round trip (``ramp``).

        Unpaced, each success lets two requests go at once and the answers come
        back bunched, so a budget that runs out mid-round (a fixed window) is
        overshot by all that go before the first 429 is back. Spread, only the
        few sent within that 429's own round trip are.
        """
        if not (self.opened and self.slow_start) or self.limit >= self.cap:
            self.ramp = None
            return
        previous = self._round_trip
        self._round_trip = latency_s if previous is None else 0.8 * previous + 0.2 * latency_s
        per_minute = 60.0 * self.limit / max(self._round_trip, _MIN_ROUND_TRIP_S)
        if self.ramp is None:
            self.ramp = Pacer(per_minute, self._clock)
        else:
            self.ramp.set_rate(per_minute)

    def shrink(self, factor: float) -> None:
        """Cut the window (never below one place); slow start ends."""
        self.opened = True
        self.slow_start = False
        self.ramp = None
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
        # Requests accepted since the current window began, and when it began.
        self._window_accepted = 0
        self._window_start: float | None = None
        # When the spent window's pause ends (None: no window spent now).
        self._window_end: float | None = None
        self.window_budget: tuple[int, float] | None = None

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
        if self._window_start is None:
            self._window_start = now
        if self._window_end is not None and now >= self._window_end:
            # The spent window is over: this success is the next one's first.
            self._window_start, self._window_accepted, self._window_end = self._window_end, 0, None
        self._window_accepted += 1
        if self._window_end is not None:
            # In flight at the 429 and accepted after it: part of the spent window's budget.
            self._set_window(self._window_accepted, self._window_end - self._window_start)
        self._accepted.append(now)
        while self._accepted and now - self._accepted[0] >= _MEASURE_S:
            self._accepted.popleft()
        if self.pacer is not None and self._provisional_until is not None:
            if now >= self._provisional_until:
                # The requests in flight at the first cut are back: count them in.
                self._provisional_until = None
                estimate = _CUT_FACTOR * len(self._accepted) / _MEASURE_S * 60.0
                self.pacer.set_rate(max(self.pacer.per_minute, estimate))
        elif self.pacer is not None and self.window_budget is None:
            elapsed = now - self._last_growth
            self.pacer.set_rate(self.pacer.per_minute * (1 + self._growth * elapsed))
        self._last_growth = now

    def learn_window(self, resume_at: float) -> None:
        """A 429 asked to wait until ``resume_at``, long: a fixed window is spent.

        Its budget is what was accepted since the window began (answers still in
        flight count when they come); the pace becomes that budget over the
        window's length (its start to ``resume_at``), and no longer creeps up.
        """
        start = self._window_start
        if self._window_end is not None:
            return  # a later 429 of the same spent window
        if start is None or self._window_accepted == 0:
            self._window_start, self._window_accepted = resume_at, 0
            return
        self._window_end = resume_at
        self._set_window(self._window_accepted, resume_at - start)
        self._provisional_until = None
        self._hold_until = resume_at

    def _set_window(self, budget: int, length_s: float) -> None:
        length = max(length_s, 1.0)
        self.window_budget = (budget, length)
        per_minute = max(budget / length * 60.0, 0.1)
        if self.pacer is None:
            self.pacer = Pacer(per_minute, self._clock)
        else:
            self.pacer.set_rate(per_minute)

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
