"""The limiter on a fake clock, fed the advice of issue 16's dialects."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from batchrun.limits import Limiter, Permit, ScopeLimits
from batchrun.pacing import LATE_TOLERANCE_S, AdaptiveRate, Pacer
from batchrun.ratelimits import Budget, RateLimitAdvice
from batchrun.scope import HEADER_MARGIN


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter(clock: FakeClock, models: tuple[str, ...] = ("a",), **limits: object) -> Limiter:
    model_limits = ScopeLimits(8, **limits)  # type: ignore[arg-type]
    return Limiter(
        ScopeLimits(16, adaptive=False),
        dict.fromkeys(models, model_limits),
        clock=clock,
        sleep=clock.sleep,
    )


def grant(lim: Limiter, model: str = "a", tokens: float = 10.0) -> Permit:
    return asyncio.run(lim.acquire(model, tokens))


def openai(remaining: float, reset_s: float, limit: float = 600) -> RateLimitAdvice:
    return RateLimitAdvice(requests=Budget(limit, remaining, reset_s))


def test_pacer_resumes_at_the_pace_after_a_pause() -> None:
    """Slots asked for during a pause start at its end, one interval apart: no burst."""
    clock = FakeClock()
    pacer = Pacer(600, clock)
    pause_end = clock.now + 5.0
    waits = [pacer.reserve(1.0, pause_end) for _ in range(4)]
    assert waits == pytest.approx([5.0, 5.1, 5.2, 5.3])


def test_pacer_burst_is_the_documented_bound() -> None:
    """With ``burst`` 3, three go at once after a quiet spell, then the pace."""
    clock = FakeClock()
    pacer = Pacer(600, clock, burst=3)
    assert [pacer.reserve() for _ in range(5)] == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_a_continuous_budget_at_zero_waits_one_slot_not_the_whole_reset() -> None:
    """OpenAI's ``remaining: 0, reset: 5s``: the next request goes ~0.1 s later, not 5 s."""
    clock = FakeClock()
    lim = limiter(clock)
    permit = grant(lim)
    permit.succeeded(0.02, 20, openai(remaining=0, reset_s=5.0))
    permit.release()
    started = clock.now
    grant(lim).release()
    assert clock.now - started == pytest.approx(60 / 600, abs=0.01)
    assert lim.models["a"].announced["requests"].per_minute == 600 * HEADER_MARGIN


def test_a_fixed_budget_at_zero_pauses_until_the_window_starts_over() -> None:
    """LiteLLM's key budget spent, reset_at 7 s away: the key waits those 7 s."""
    clock = FakeClock()
    lim = limiter(clock)
    permit = grant(lim)
    spent = RateLimitAdvice(key_requests=Budget(20, 0, 7.0, fixed=True))
    permit.succeeded(0.02, 20, spent)
    permit.release()
    started = clock.now
    grant(lim).release()
    assert clock.now - started == pytest.approx(7.0)
    assert lim.models["a"].paused_until < started  # the key's window, not the model's


def test_a_model_429_stalls_only_that_model() -> None:
    """A per-model 429 (no key advice) pauses model a; model b and the key go on at once."""
    clock = FakeClock()
    lim = limiter(clock, ("a", "b"))
    grant(lim, "a").rate_limited(RateLimitAdvice(retry_after_s=5.0))
    assert lim.key.paused_until < clock.now
    assert lim.models["a"].paused_until == pytest.approx(clock.now + 5.0)
    started = clock.now
    grant(lim, "b").release()
    assert clock.now == started


def test_a_long_advice_against_short_evidence_waits_for_the_evidence_and_probes_once() -> None:
    """429 says 60 s, the last headers said whole again in 2 s: wait 2 s, send one probe.

    If the probe meets a 429 too, the advice holds in full.
    """
    clock = FakeClock()
    lim = limiter(clock)
    first = grant(lim)
    first.succeeded(0.02, 20, openai(remaining=3, reset_s=2.0))
    first.release()
    refused = grant(lim)
    refused.rate_limited(RateLimitAdvice(retry_after_s=60.0))
    refused.release()
    scope = lim.models["a"]
    assert scope.paused_until == pytest.approx(102.0)  # whole again 2 s after those headers
    assert scope.window.limit == 1  # one probe after the pause
    probe = grant(lim)
    assert clock.now == pytest.approx(102.0, abs=0.2)
    probe.rate_limited(RateLimitAdvice(retry_after_s=60.0))
    assert scope.paused_until == pytest.approx(clock.now + 60.0)


def test_429s_of_requests_in_flight_at_the_pause_are_not_news() -> None:
    """Three requests out when the first 429 comes: their 429s do not stretch the pause."""
    clock = FakeClock()
    lim = limiter(clock)
    permits = [lim.try_acquire("a", 1) or grant(lim) for _ in range(1)]
    first = permits[0]
    first.succeeded(0.01, 2)
    first.release()
    out = [grant(lim) for _ in range(3)]
    out[0].rate_limited(RateLimitAdvice(retry_after_s=2.0))
    until = lim.models["a"].paused_until
    clock.now += 0.5
    for permit in out[1:]:
        permit.rate_limited(RateLimitAdvice(retry_after_s=2.0))
    assert lim.models["a"].paused_until == until


def test_a_max_parallel_429_caps_the_key_window_and_pauses_nothing() -> None:
    """``rate_limit_type: max_parallel_requests``: the key holds what the gateway held."""
    clock = FakeClock()
    lim = limiter(clock, adaptive=False)
    first = grant(lim)
    first.succeeded(0.1, 2)
    first.release()
    out = [grant(lim) for _ in range(6)]
    refusal = RateLimitAdvice(retry_after_s=60.0, limit_type="max_parallel_requests")
    for permit in out[4:]:  # the gateway held 4; the 5th and 6th were refused
        permit.rate_limited(refusal)
        permit.release()
    assert lim.key.window.cap == 4
    assert lim.key.paused_until < clock.now and lim.models["a"].paused_until < clock.now


def test_a_fixed_window_budget_is_learned_from_a_long_429() -> None:
    """20 accepted (5 of them answered after the 429), then "wait 60 s": 20 a window."""
    clock = FakeClock()
    rate = AdaptiveRate(clock)
    for _ in range(15):
        rate.on_success(0.05)
        clock.now += 0.01
    rate.on_rate_limited()
    rate.learn_window(clock.now + 60.0)
    for _ in range(5):
        rate.on_success(0.05)
    assert rate.window_budget is not None and rate.window_budget[0] == 20
    assert rate.per_minute == pytest.approx(20 / 60.15 * 60, rel=0.01)
    clock.now += 61.0
    for _ in range(10):  # the next window: the pace stays the learned one, no creeping up
        rate.on_success(0.05)
        clock.now += 3.0
    assert rate.per_minute == pytest.approx(20 / 60.15 * 60, rel=0.01)


def test_after_a_pause_requests_go_one_probe_then_at_the_pace() -> None:
    """Ten requests waiting through a 429's pause go out at the pace, not together."""
    clock = FakeClock()
    lim = limiter(clock, rpm=600)

    async def main() -> list[float]:
        first = await lim.acquire("a", 1)
        first.succeeded(0.01, 2)
        first.release()
        refused = await lim.acquire("a", 1)
        refused.rate_limited(RateLimitAdvice(retry_after_s=3.0))
        refused.release()
        times: list[float] = []

        async def one() -> None:
            permit = await lim.acquire("a", 1)
            times.append(clock.now)
            await clock.sleep(0.01)
            permit.succeeded(0.01, 2)
            permit.release()

        await asyncio.gather(*(one() for _ in range(10)))
        return times

    times = asyncio.run(main())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(times) >= 103.0 - 1e-6
    assert min(gaps) >= 0.1 - 1e-6


def test_the_summary_names_the_limit_that_held_a_model_back() -> None:
    """A declared 600 rpm kept busy: held back by "declared rpm", about all of it used."""
    clock = FakeClock()
    lim = limiter(clock, rpm=600)
    for _ in range(50):
        permit = grant(lim)
        permit.succeeded(0.01, 2)
        permit.release()
    held_by, used = lim.held_back("a")
    assert held_by == "declared rpm"
    assert used == pytest.approx(1.0, abs=0.02)


def test_a_gateway_metering_tokens_is_charged_prompt_plus_max_tokens() -> None:
    """With token budgets announced, a request costs its prompt plus max_tokens, not its usage."""
    clock = FakeClock()
    lim = limiter(clock, tpm=60_000)
    permit = grant(lim, tokens=40)  # estimated: 24 prompt + 16 max_tokens
    metered = RateLimitAdvice(tokens=Budget(60_000, 50_000, 1.0))
    permit.succeeded(0.01, total_tokens=30, advice=metered, prompt_tokens=27, max_output_tokens=16)
    assert lim.models["a"].tokens == pytest.approx(43)


def stalled_times(stall_s: float, requests: int = 3) -> list[float]:
    """When each of ``requests`` paced at 600 rpm went, the second woken ``stall_s`` late."""
    clock = FakeClock()
    stalls = [stall_s]

    async def stalling_sleep(seconds: float) -> None:
        clock.now += seconds + (stalls.pop() if stalls else 0.0)

    lim = Limiter(
        ScopeLimits(16, adaptive=False), {"a": ScopeLimits(8, rpm=600)}, clock, stalling_sleep
    )

    async def main() -> list[float]:
        times = []
        for _ in range(requests):
            permit = await lim.acquire("a", 1)
            times.append(clock.now)
            permit.succeeded(0.0, 2)
            permit.release()
        return times

    return asyncio.run(main())


def test_a_stalled_loop_does_not_make_up_missed_slots_in_a_burst() -> None:
    """A request woken 0.3 s late: the next goes about one interval after it, not at once
    (one interval less the late tolerance the schedule keeps)."""
    first, late, after = stalled_times(0.3)
    assert late - first == pytest.approx(0.4)
    assert after - late == pytest.approx(0.1 - LATE_TOLERANCE_S)


def test_a_stall_costs_only_the_time_beyond_the_late_tolerance() -> None:
    """Woken 50 ms late, the schedule moves by 30 ms, not by the whole 50 ms: a busy machine
    stalling the loop now and then no longer loses each stall's full length of its pace."""
    times = stalled_times(0.05, requests=12)
    assert times[1] - times[0] == pytest.approx(0.15)
    assert times[-1] - times[0] == pytest.approx(11 * 0.1 + 0.05 - LATE_TOLERANCE_S)
