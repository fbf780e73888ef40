"""The asyncio loop: scheduling across models, retries, stopping, and reporting results.

``Runner.run`` sends every request it is given through a ``Sender``, each
model from its own workers and under the ``Limiter`` (windows, pace,
pauses). Every request it takes ends in exactly one ``Result`` handed to
``on_result``: ok, or failed with its classified error. Retries are decided
by the error's class, never by catching everything:

* retryable (429, 408, 409, 5xx, timeouts, connection, cut streams): backoff
  with jitter (or the gateway's ``Retry-After``), bounded in attempts and time;
* the row failed (400, 404, 413): recorded, never retried;
* the model failed (no channel or unknown, before any success): a few confirmations,
  then that model stops and its remaining requests are recorded unsent;
  after a success it is treated as transient and retried with long waits;
* the run failed (bad key, no balance): no new sends; what is in flight ends.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from batchrun.client import Sender
from batchrun.errors import (
    FatalRequestError,
    ModelUnavailable,
    RateLimited,
    RequestError,
    RetryableError,
)
from batchrun.limits import Limiter
from batchrun.ratelimits import RateLimitAdvice
from batchrun.record import Answer, Request, Result

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a retryable failure."""

    max_retries: int = 6
    max_retry_time_s: float = 600.0
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    model_unavailable_confirmations: int = 3
    # 429s are bounded by time without progress, not by a count (issue 16).
    max_rate_limited_s: float = 600.0

    def delay(self, retry: int, error: RequestError) -> float:
        """Seconds to wait before retry number ``retry`` (1-based), with jitter.

        After a 429 with advice the limiter keeps the wait: only a jitter here.
        """
        if isinstance(error, RateLimited) and (error.advice or error.retry_after is not None):
            return random.uniform(0.0, 0.1 * self.base_delay_s)
        retry = min(retry, 16)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(retry_after) + random.uniform(0.0, 0.1 * self.base_delay_s)
        if isinstance(error, ModelUnavailable):
            # A channel that vanished mid-run: give the gateway time to re-enable it.
            return min(self.max_delay_s, max(5.0 * self.base_delay_s, 1.0) * 2.0 ** (retry - 1))
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass
class ModelState:
    """What the run knows about one model while it runs."""

    unavailable_streak: int = 0
    successes: int = 0
    stopped_reason: str | None = None
    sent: int = 0
    rate_limited: int = 0


@dataclass
class RunOutcome:
    """How the loop ended."""

    fatal: RequestError | None = None
    interrupted: bool = False
    models: dict[str, ModelState] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0


class Runner:
    """Sends requests under the run's limits and turns each into a ``Result``."""

    def __init__(
        self,
        sender: Sender,
        on_result: Callable[[Result], None],
        limiter: Limiter,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._sender = sender
        self._on_result = on_result
        self._limiter = limiter
        self.limiter = limiter  # read by the summary: which limit held each model back
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._stopping = False
        self.outcome = RunOutcome(models={name: ModelState() for name in limiter.models})

    def stop(self) -> None:
        """Take no new requests; those in flight finish."""
        self._stopping = True
        self.outcome.interrupted = True

    async def run(self, sources: Mapping[str, Iterable[Request]]) -> RunOutcome:
        """Send every request of every model (until stopped); return how the run ended.

        Each model starts with an equal share of the key's concurrency in
        workers. A worker whose model has nothing left moves on to the other
        models, so capacity flows to whatever is still to do, while a slow or
        paced model never holds up the others' share.
        """
        self.outcome.started = time.time()
        queues = {name: iter(requests) for name, requests in sources.items()}
        share = max(1, -(-self._limiter.key.window.cap // max(len(queues), 1)))
        try:
            async with asyncio.TaskGroup() as group:
                for name in queues:
                    for _ in range(min(share, self._limiter.models[name].window.cap)):
                        group.create_task(self._worker(name, queues))
        finally:
            self.outcome.finished = time.time()
        return self.outcome

    async def _worker(self, first: str, queues: Mapping[str, Iterator[Request]]) -> None:
        for name in [first, *(other for other in queues if other != first)]:
            state = self.outcome.models[name]
            for request in queues[name]:
                if self._stopping:
                    return
                if state.stopped_reason is not None:
                    self._on_result(_skipped(request, state.stopped_reason))
                    continue
                await self._send(request, state)

    async def _send(self, request: Request, state: ModelState) -> None:
        """Send one request until it ends in one result (or the run stops before it is sent).

        Other retryable failures are bounded by count and time; 429s only by
        ``max_rate_limited_s`` without a new success for the model, so a row
        never fails for rate limiting while the run makes progress.
        """
        started = time.time()
        attempts = limited = 0
        retry_started: float | None = None
        progress = (state.successes, time.monotonic())  # the model's successes, and since when
        while True:
            attempts += 1
            outcome = await self._attempt(request, state)
            if outcome is None:
                return
            if isinstance(outcome, Answer):
                state.unavailable_streak = 0
                state.successes += 1
                self._on_result(_ok(request, outcome, attempts, started))
                return
            now = time.monotonic()
            if state.successes != progress[0]:
                progress = (state.successes, now)
            if isinstance(outcome, RateLimited):
                limited += 1
                over = now - progress[1] >= self._retry.max_rate_limited_s
            else:
                retry_started = retry_started if retry_started is not None else now
                over = (
                    attempts - limited > self._retry.max_retries
                    or now - retry_started >= self._retry.max_retry_time_s
                )
            if self._final(outcome, state) or over or self._stopping:
                self._on_result(_failed(request, outcome, attempts, started))
                return
            await self._sleep(self._retry.delay(attempts - limited or 1, outcome))

    async def _attempt(self, request: Request, state: ModelState) -> Answer | RequestError | None:
        """One send under a permit: its answer or error; None if stopped before sending."""
        name = request.model.name
        limiter = self._limiter
        permit = limiter.try_acquire(name, request.estimated_tokens) or (
            await limiter.acquire(name, request.estimated_tokens)
        )
        try:
            if self._stopping:
                return None  # unsent: no row, a rerun sends it
            if state.stopped_reason is not None:
                self._on_result(_skipped(request, state.stopped_reason))
                return None
            state.sent += 1
            try:
                answer = await self._sender.complete(request)
            except RateLimited as exc:
                state.rate_limited += 1
                permit.rate_limited(exc.advice or RateLimitAdvice(retry_after_s=exc.retry_after))
                return exc
            except RequestError as exc:
                return exc
            permit.succeeded(
                answer.latency_s,
                answer.total_tokens,
                answer.ratelimit,
                answer.prompt_tokens,
                request.model.max_output_tokens,
            )
            return answer
        finally:
            permit.release()

    def _final(self, error: RequestError, state: ModelState) -> bool:
        """Whether ``error`` ends its request now, whatever retries are left.

        A model never served yet is confirmed a few times, then stopped; a
        fatal error stops the run; a row error is never retried.
        """
        if isinstance(error, ModelUnavailable) and state.successes == 0:
            state.unavailable_streak += 1
            if state.unavailable_streak >= self._retry.model_unavailable_confirmations:
                state.stopped_reason = error.message
            return True
        if isinstance(error, FatalRequestError):
            if self.outcome.fatal is None:
                self.outcome.fatal = error
            self._stopping = True
            return True
        return not isinstance(error, RetryableError | ModelUnavailable)


def _ok(request: Request, answer: Answer, attempts: int, started: float) -> Result:
    if request.model.response_schema is None:
        return Result.ok(request, answer, attempts, started)
    from batchrun.scoring import check_structured

    parsed, valid = check_structured(answer.response, request.model.response_schema)
    return Result.ok(request, answer, attempts, started, parsed, valid)


def _failed(request: Request, error: RequestError, attempts: int, started: float) -> Result:
    return Result.failed(
        request,
        error_type=error.error_type,
        message=error.message,
        http_status=error.http_status,
        attempts=attempts,
        started=started,
    )


def _skipped(request: Request, reason: str) -> Result:
    return Result.failed(
        request,
        error_type="model_unavailable",
        message=f"not sent: the model was stopped after repeated failures ({reason})",
        http_status=None,
        attempts=0,
        started=time.time(),
    )
