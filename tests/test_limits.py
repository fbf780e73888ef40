"""The limiter on a fake clock: pacing, windows, the learned pace, durations."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from batchrun.limits import Limiter, Permit, Scope, ScopeLimits
from batchrun.pacing import AdaptiveRate, Pacer, Window
from batchrun.ratelimits import RateLimitAdvice, parse_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_pacer_spaces_requests_evenly() -> None:
    """600 a minute: each reservation is 0.1 s after the previous one."""
    clock = FakeClock()
    pacer = Pacer(600, clock)
    waits = [pacer.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_pacer_charges_tokens_and_corrects() -> None:
    """Tokens are charged up front; a smaller actual usage gives time back."""
    clock = FakeClock()
    pacer = Pacer(60_000, clock)  # 1,000 tokens a second
    assert pacer.reserve(500) == 0.0
    assert pacer.reserve(500) == pytest.approx(0.5)
    pacer.correct(-400)  # the first request used 100 tokens, not 500
    assert pacer.reserve(1) == pytest.approx(0.6)


def test_pacer_idle_time_is_not_saved_up() -> None:
    """After a quiet spell the pace allows one request at once, not a burst."""
    clock = FakeClock()
    pacer = Pacer(60, clock)
    pacer.reserve()
    clock.now += 100
    assert pacer.reserve() == 0.0
    assert pacer.reserve() == pytest.approx(1.0)


def test_window_probe_open_shrink_grow() -> None:
    """One place until the first success, the cap after it; halve on 429; grow back."""
    window = Window(8)
    assert window.limit == 1
    window.open(0.01)
    assert window.limit == 8
    window.shrink(0.5)
    assert window.limit == 4
    for _ in range(4):  # one window of successes: about one place more
        window.grow()
    assert 4.9 < window.limit < 5.0


def test_window_opens_at_once_when_round_trips_are_long() -> None:
    """With 300 ms round trips a slow start would take seconds: the window opens fully."""
    window = Window(100, slow_start=True)
    window.open(0.3)
    assert window.limit == 100


def test_window_slow_start_doubles_per_round() -> None:
    """An adaptive window opens at 4 and adds one place per success until the first cut."""
    window = Window(100, slow_start=True)
    window.open(0.01)
    assert window.limit == 4
    for _ in range(4):
        window.grow()
    assert window.limit == 8
    window.shrink(0.5)
    window.grow()
    assert window.limit == pytest.approx(4.25)


def test_a_slow_start_spreads_its_requests_over_the_round_trip() -> None:
    """After a 200 ms probe the window opens to its slow start of 4: they go 50 ms apart,
    not at once, so a budget that runs out mid-round is overshot by few; at the cap the
    spreading ends."""
    clock = FakeClock()
    lim = Limiter(
        ScopeLimits(32, adaptive=False), {"a": ScopeLimits(32)}, clock=clock, sleep=clock.sleep
    )

    async def main() -> list[float]:
        probe = await lim.acquire("a", 1)
        probe.succeeded(0.2, 2)
        probe.release()
        times = []
        for _ in range(4):
            await lim.acquire("a", 1)  # kept in flight
            times.append(clock.now)
        return times

    times = asyncio.run(main())
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([0.05] * 3)
    window = lim.models["a"].window
    window.limit = float(window.cap)
    window.spread(0.2)
    assert window.ramp is None and lim.models["a"].unpaced()


def test_window_wakes_waiters_without_polling() -> None:
    """A waiter blocked on a full window runs as soon as a place is released."""
    order: list[str] = []

    async def main() -> None:
        window = Window(1)

        async def holder() -> None:
            await window.acquire()
            order.append("first in")
            await asyncio.sleep(0.01)
            order.append("first out")
            window.release()

        async def waiter() -> None:
            await window.acquire()
            order.append("second in")
            window.release()

        await asyncio.gather(holder(), waiter())

    asyncio.run(main())
    assert order == ["first in", "first out", "second in"]


def test_adaptive_rate_learns_the_accepted_rate() -> None:
    """Over-driven, the accepted rate is the limit: the pace lands just below it."""
    clock = FakeClock()
    rate = AdaptiveRate(clock)
    for _ in range(30):  # 10 a second for 3 s
        clock.now += 0.1
        rate.on_success(0.05)
    assert rate.on_rate_limited() is True
    assert rate.per_minute == pytest.approx(0.92 * 600, rel=0.11)
    assert rate.on_rate_limited() is False  # 429s of requests already in flight


def test_adaptive_rate_creeps_up() -> None:
    """Without 429s the learned pace grows about 2% a second."""
    clock = FakeClock()
    rate = AdaptiveRate(clock)
    for _ in range(30):
        clock.now += 0.1
        rate.on_success(0.05)
    rate.on_rate_limited()
    start = rate.per_minute
    assert start is not None
    for _ in range(100):  # 10 s
        clock.now += 0.1
        rate.on_success(0.05)
    assert rate.per_minute == pytest.approx(start * 1.02**10, rel=0.02)


def test_adaptive_rate_needs_evidence() -> None:
    """429s with nothing accepted set no pace (the window and backoff act)."""
    rate = AdaptiveRate(FakeClock())
    assert rate.on_rate_limited() is True
    assert rate.per_minute is None


def test_limiter_retry_after_pauses_the_model() -> None:
    """A Retry-After pauses later requests of that model until it has passed."""
    clock = FakeClock()

    async def main() -> list[float]:
        limiter = Limiter(
            ScopeLimits(4, adaptive=False), {"m": ScopeLimits(4)}, clock=clock, sleep=clock.sleep
        )
        starts = []
        permit = await take(limiter, "m", 10)
        permit.succeeded(0.1, 10)
        permit.release()
        permit = await take(limiter, "m", 10)
        permit.rate_limited(RateLimitAdvice(retry_after_s=2.5))
        permit.release()
        permit = await take(limiter, "m", 10)
        starts.append(clock.now)
        permit.release()
        return starts

    assert asyncio.run(main()) == [pytest.approx(102.5)]


def test_limiter_declared_rpm_paces_model() -> None:
    """A model's declared 120 rpm spaces its requests 0.5 s apart."""
    clock = FakeClock()

    async def main() -> list[float]:
        limiter = Limiter(
            ScopeLimits(4, adaptive=False),
            {"m": ScopeLimits(4, rpm=120)},
            clock=clock,
            sleep=clock.sleep,
        )
        starts = []
        for _ in range(3):
            permit = await take(limiter, "m", 1)
            starts.append(clock.now)
            permit.succeeded(0.0, 1)
            permit.release()
        return starts

    assert asyncio.run(main()) == pytest.approx([100.0, 100.5, 101.0])


async def take(limiter: Limiter, model: str, tokens: float) -> Permit:
    """A permit the way the runner takes one: at once if free, else by waiting."""
    return limiter.try_acquire(model, tokens) or await limiter.acquire(model, tokens)


def test_try_acquire_takes_nothing_when_it_cannot_grant() -> None:
    """With the model's window full, try_acquire gives None and holds no key place."""

    async def main() -> tuple[Permit | None, int, Permit | None]:
        limiter = Limiter(ScopeLimits(4, adaptive=False), {"m": ScopeLimits(1, adaptive=False)})
        limiter.models["m"].window.open(0.01)
        first = limiter.try_acquire("m", 1)
        assert first is not None
        refused = limiter.try_acquire("m", 1)
        held = limiter.key.window.in_use
        first.release()
        return refused, held, limiter.try_acquire("m", 1)

    refused, held, again = asyncio.run(main())
    assert refused is None
    assert held == 1
    assert again is not None


def test_try_acquire_leaves_paced_requests_to_acquire() -> None:
    """A declared pace is never skipped: try_acquire refuses, acquire waits for the slot."""
    limiter = Limiter(ScopeLimits(4, adaptive=False), {"m": ScopeLimits(4, rpm=60)})
    assert limiter.try_acquire("m", 1) is None
    assert limiter.models["m"].window.in_use == 0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12ms", 0.012),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1m30.2s", 90.2),
        ("59.5s", 59.5),
        ("2", 2.0),
        ("", None),
        ("soon", None),
        ("1x", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    """Go-style durations from x-ratelimit-reset-* headers."""
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def _opened_scope(adaptive: bool, clock: FakeClock) -> Scope:
    scope = Scope("m", ScopeLimits(40, adaptive=adaptive), clock)
    scope.window.shrink(1.0)  # opened, no slow start
    scope.window.limit = 40.0
    return scope


def test_rising_latency_shrinks_an_adaptive_window() -> None:
    """Latency three times its baseline cuts the window by a tenth, once per second."""
    clock = FakeClock()
    scope = _opened_scope(True, clock)
    for _ in range(60):
        scope.succeeded(0.2, 0.0)
    assert scope.window.limit == 40.0
    for _ in range(60):
        scope.succeeded(1.0, 0.0)
    # One cut to 36 within the second (then regrowth of +1 per window of successes).
    assert 36.0 < scope.window.limit < 38.0
    before = scope.window.limit
    clock.now += 1.5
    scope.succeeded(1.0, 0.0)
    assert scope.window.limit == pytest.approx((before + 1 / before) * 0.9)


def test_latency_is_not_watched_without_adaptation() -> None:
    """With adaptive limits off, latency never moves the window."""
    clock = FakeClock()
    scope = _opened_scope(False, clock)
    for latency in [0.2] * 60 + [1.0] * 60:
        scope.succeeded(latency, 0.0)
    assert scope.window.limit == 40.0


def test_the_first_answers_of_a_burst_set_no_baseline() -> None:
    """A burst's first answers are its fastest: against them, ordinary latency is no rise."""
    clock = FakeClock()
    scope = _opened_scope(True, clock)
    for latency in [0.08] * 10 + [0.3] * 100:
        scope.succeeded(latency, 0.0)
    assert scope.window.limit == 40.0


async def _second_waits(window: Window, answer_probe_after: float | None) -> tuple[float, bool]:
    """Send a probe, then ask for a second place: how long it waited, and if the window opened.

    ``answer_probe_after``: release the probe (any answer) after that many seconds.
    """
    loop = asyncio.get_running_loop()
    await window.acquire()
    if answer_probe_after is not None:
        loop.call_later(answer_probe_after, window.release)
    started = loop.time()
    await asyncio.wait_for(window.acquire(), 1.0)
    return loop.time() - started, window.opened


def test_a_probe_out_past_the_grace_opens_the_window() -> None:
    """With a trusted key, a probe still unanswered after the grace lets the others go."""
    window = Window(10)
    window.probe_grace = 0.02
    waited, opened = asyncio.run(_second_waits(window, None))
    assert opened and window.limit == 10
    assert 0.015 <= waited < 0.5


def test_without_trust_the_probe_is_waited_for() -> None:
    """No grace: the second request goes only when the probe is back."""
    window = Window(10)
    waited, opened = asyncio.run(_second_waits(window, 0.1))
    assert not opened
    assert waited >= 0.09


def test_a_probe_answered_within_the_grace_opens_nothing() -> None:
    """A quick answer (a refusal, say) cancels the grace: the window stays at one place."""

    async def main() -> tuple[bool, float]:
        window = Window(10)
        window.probe_grace = 0.05
        await window.acquire()
        window.release()  # a quick refusal
        await asyncio.sleep(0.1)
        return window.opened, window.limit

    assert asyncio.run(main()) == (False, 1.0)


def test_limiter_trust_sets_the_grace_everywhere() -> None:
    """``trust`` gives the key's window and every model's the grace."""
    limiter = Limiter(ScopeLimits(8), {"a": ScopeLimits(4), "b": ScopeLimits(4)})
    limiter.trust(0.2)
    windows = [limiter.key.window, *(scope.window for scope in limiter.models.values())]
    assert [w.probe_grace for w in windows] == [0.2, 0.2, 0.2]
