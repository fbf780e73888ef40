"""The runner with an in-memory sender: retries, model stops, run stops, coverage."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import polars as pl

from batchrun.config import Job
from batchrun.dataset import PROMPT_ID
from batchrun.errors import FatalRequestError, ModelUnavailable, RateLimited, RowError, ServerError
from batchrun.limits import Limiter, ScopeLimits
from batchrun.plan import build_plan
from batchrun.record import Answer, Request, Result
from batchrun.runner import RetryPolicy, Runner
from batchrun.templates import compile_prompt

NO_WAIT = RetryPolicy(max_retries=3, base_delay_s=0.0001, max_delay_s=0.0001)


def requests(rows: int = 5, models: tuple[str, ...] = ("a", "b")) -> list[Request]:
    job = Job.model_validate(
        {
            "name": "t",
            "provider": "mock",
            "input": {"path": "x"},
            "prompt": {"user": "{{ q }}"},
            "models": list(models),
            "output": {"path": "o.parquet"},
        }
    )
    frame = pl.DataFrame(
        {PROMPT_ID: [str(i) for i in range(rows)], "q": [f"q{i}" for i in range(rows)]}
    )
    return list(build_plan(job, frame, compile_prompt(job.prompt)).requests())


def ok() -> Answer:
    return Answer(
        response="x",
        finish_reason="stop",
        prompt_tokens=1,
        completion_tokens=1,
        total_tokens=2,
        cached_tokens=None,
        reasoning_tokens=None,
        response_id="r",
        served_model="m",
        http_status=200,
        gateway_request_id=None,
        latency_s=0.0,
    )


class FakeSender:
    """Answers by a rule; counts what it was sent."""

    def __init__(self, rule: Callable[[Request, int], Answer]) -> None:
        self.rule = rule
        self.calls: Counter[str] = Counter()

    async def complete(self, request: Request) -> Answer:
        self.calls[request.key] += 1
        await asyncio.sleep(0)
        return self.rule(request, self.calls[request.key])


def by_model(reqs: list[Request]) -> dict[str, list[Request]]:
    grouped: dict[str, list[Request]] = {}
    for request in reqs:
        grouped.setdefault(request.model.name, []).append(request)
    return grouped


def limiter_for(reqs: list[Request], concurrency: int) -> Limiter:
    names = sorted({r.model.name for r in reqs})
    return Limiter(
        ScopeLimits(concurrency, adaptive=False),
        {name: ScopeLimits(concurrency) for name in names},
    )


def run(
    sender: FakeSender, reqs: list[Request], concurrency: int = 3
) -> tuple[list[Result], Runner]:
    results: list[Result] = []

    async def go() -> Runner:
        runner = Runner(sender, results.append, limiter_for(reqs, concurrency), retry=NO_WAIT)
        await runner.run(by_model(reqs))
        return runner

    return results, asyncio.run(go())


def test_every_request_gets_one_result() -> None:
    """Each request ends in exactly one ok result."""
    reqs = requests()
    results, _ = run(FakeSender(lambda r, n: ok()), reqs)
    assert sorted(r.request_key for r in results) == sorted(r.key for r in reqs)
    assert {r.status for r in results} == {"ok"}


def test_retryable_errors_retry_and_count_attempts() -> None:
    """A 5xx then success is one ok row with attempts = 2."""

    def rule(r: Request, n: int) -> Answer:
        if n == 1:
            raise ServerError("boom", http_status=500)
        return ok()

    results, _ = run(FakeSender(rule), requests(2))
    assert {(r.status, r.attempts) for r in results} == {("ok", 2)}


def test_retries_are_bounded() -> None:
    """A request that always meets a 5xx fails after max_retries + 1 attempts."""

    def rule(r: Request, n: int) -> Answer:
        raise ServerError("boom", http_status=500)

    sender = FakeSender(rule)
    results, _ = run(sender, requests(1, ("a",)))
    assert [(r.status, r.error_type, r.attempts) for r in results] == [("error", "server_error", 4)]


def test_429_retries_are_bounded_by_time_not_by_a_count() -> None:
    """Ten 429s (more than max_retries) and then an answer: the row is ok (issue 16)."""

    def rule(r: Request, n: int) -> Answer:
        if n <= 10:
            raise RateLimited("slow down", http_status=429)
        return ok()

    results, runner = run(FakeSender(rule), requests(1, ("a",)))
    assert [(r.status, r.attempts) for r in results] == [("ok", 11)]
    assert runner.outcome.models["a"].rate_limited == 10


def test_429s_fail_a_row_only_after_max_rate_limited_s_without_progress() -> None:
    """A request that always 429s fails once its model made no progress for the bound."""

    def rule(r: Request, n: int) -> Answer:
        raise RateLimited("slow down", http_status=429)

    results: list[Result] = []
    policy = RetryPolicy(base_delay_s=0.001, max_delay_s=0.001, max_rate_limited_s=0.05)
    reqs = requests(1, ("a",))

    async def go() -> None:
        runner = Runner(FakeSender(rule), results.append, limiter_for(reqs, 3), retry=policy)
        await runner.run(by_model(reqs))

    asyncio.run(go())
    assert [(r.status, r.error_type) for r in results] == [("error", "rate_limited")]
    assert results[0].attempts > policy.max_retries + 1


def test_row_errors_are_not_retried() -> None:
    """A 400 is recorded once, never retried."""

    def rule(r: Request, n: int) -> Answer:
        raise RowError("context too long", http_status=400)

    sender = FakeSender(rule)
    results, _ = run(sender, requests(3, ("a",)))
    assert all(r.attempts == 1 and r.error_type == "bad_request" for r in results)
    assert set(sender.calls.values()) == {1}


def test_unavailable_model_stops_others_go_on() -> None:
    """A model without a channel stops after 3 failures; the other model completes."""

    def rule(r: Request, n: int) -> Answer:
        if r.model.name == "a":
            raise ModelUnavailable("no channel", http_status=503)
        return ok()

    sender = FakeSender(rule)
    results, runner = run(sender, requests(20), concurrency=1)
    sent_a = sum(
        n
        for key, n in sender.calls.items()
        if key in {r.key for r in requests(20) if r.model.name == "a"}
    )
    assert sent_a == 3
    assert sum(1 for r in results if r.model == "b" and r.status == "ok") == 20
    assert sum(1 for r in results if r.model == "a") == 20
    assert runner.outcome.models["a"].stopped_reason == "no channel"


def test_fatal_error_stops_the_run() -> None:
    """A bad key stops new sends at once."""

    def rule(r: Request, n: int) -> Answer:
        raise FatalRequestError("bad key", http_status=401)

    sender = FakeSender(rule)
    results, runner = run(sender, requests(50), concurrency=2)
    assert sum(sender.calls.values()) <= 3
    assert runner.outcome.fatal is not None
    assert len(results) == sum(sender.calls.values())


def test_models_progress_alike() -> None:
    """Stopped partway, every model has been covered alike."""
    results: list[Result] = []
    reqs = requests(50, ("a", "b", "c"))
    holder: list[Runner] = []

    def rule(r: Request, n: int) -> Answer:
        if len(results) >= 30:
            holder[0].stop()
        return ok()

    async def go() -> Runner:
        runner = Runner(FakeSender(rule), results.append, limiter_for(reqs, 2), retry=NO_WAIT)
        holder.append(runner)
        await runner.run(by_model(reqs))
        return runner

    runner = asyncio.run(go())
    counts = Counter(r.model for r in results)
    assert sum(counts.values()) < 150
    assert max(counts.values()) - min(counts.values()) <= 2
    assert runner.outcome.interrupted


def test_probe_first_then_open() -> None:
    """A model sends one request alone; after its first success the window opens.

    Answers take 100 ms: a slow start spreads its requests over at least that long, so
    with quicker answers they would not overlap enough to show the window's size.
    """
    in_flight = [0]
    peak: list[int] = []

    class Tracking(FakeSender):
        async def complete(self, request: Request) -> Answer:
            in_flight[0] += 1
            peak.append(in_flight[0])
            await asyncio.sleep(0.1)
            in_flight[0] -= 1
            return ok()

    run(Tracking(lambda r, n: ok()), requests(20, ("a",)), concurrency=5)
    assert peak[0] == 1
    assert max(peak) == 5
