"""The asyncio loop: scheduling across models, retries, stopping, and reporting results.

``Runner.run`` sends every request it is given through a ``Sender``, each
model from its own workers and under the ``Limiter`` (windows, pace,
pauses). Every request it takes ends in exactly one ``Result`` handed to
``on_result``: ok, or failed with its classified error. Retries are decided
by the error's class, never by catching everything:

* retryable (408, 409, 5xx, timeouts, connection, cut streams): backoff
  with jitter (or the gateway's ``Retry-After``), bounded in attempts and time;
* rate limited (429): the limiter holds the model (or the key) for as long as
  the gateway's advice and its evidence say, and ``acquire`` waits for that;
  bounded by time without progress (``max_rate_limited_s``), never by a count,
  so no row fails for rate limiting while its model is being served;
* the row failed (400, 404, 413): recorded, never retried;
* the model failed (no channel, before any success): a few confirmations,
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

from batchrun.client import Completion, Sender
from batchrun.errors import (
    FatalRequestError,
    ModelUnavailable,
    RateLimited,
    RequestError,
    RetryableError,
)
from batchrun.limits import Limiter
from batchrun.plan import Request
from batchrun.ratelimits import RateLimitAdvice
from batchrun.store import Result

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a retryable failure."""

    max_retries: int = 6
    max_retry_time_s: float = 600.0
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    model_unavailable_confirmations: int = 3
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
    first_sent: float | None = None
    last_done: float | None = None


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
        self.limiter = limiter
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._stopping = False
        self.outcome = RunOutcome(models={name: ModelState() for name in limiter.models})

    def stop(self) -> None:
        """Take no new requests; those in flight finish."""
        self._stopping = True
        self.outcome.interrupted = True

    @property
    def stopping(self) -> bool:
        """Whether the run has been told to stop (or stopped itself)."""
        return self._stopping

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
        started = time.time()
        if state.first_sent is None:
            state.first_sent = started
        attempts = 0
        retry_started: float | None = None
        limited = 0  # attempts that met a 429
        progress = (state.successes, time.monotonic())  # the model's successes, and since when
        name = request.model.name
        limiter = self._limiter
        while True:
            attempts += 1
            error: RequestError | None = None
            permit = limiter.try_acquire(name, request.estimated_tokens) or (
                await limiter.acquire(name, request.estimated_tokens)
            )
            try:
                if self._stopping:
                    return  # unsent: no row, a rerun sends it
                if state.stopped_reason is not None:
                    self._on_result(_skipped(request, state.stopped_reason))
                    return
                state.sent += 1
                try:
                    completion = await self._sender.complete(request)
                except RateLimited as exc:
                    state.rate_limited += 1
                    limited += 1
                    advice = exc.advice or RateLimitAdvice(retry_after_s=exc.retry_after)
                    permit.rate_limited(advice)
                    error = exc
                except RequestError as exc:
                    error = exc
                else:
                    permit.succeeded(
                        completion.latency_s,
                        completion.total_tokens,
                        completion.ratelimit,
                        completion.prompt_tokens,
                        request.model.max_output_tokens,
                    )
            finally:
                permit.release()
            if error is None:
                state.unavailable_streak = 0
                state.successes += 1
                state.last_done = time.time()
                self._on_result(_ok(request, completion, attempts, started))
                return
            if isinstance(error, ModelUnavailable) and state.successes == 0:
                # Never served yet: confirm a few times, then stop this model.
                state.unavailable_streak += 1
                if state.unavailable_streak >= self._retry.model_unavailable_confirmations:
                    state.stopped_reason = error.message
                self._finish_failed(request, error, attempts, started, state)
                return
            if isinstance(error, FatalRequestError):
                if self.outcome.fatal is None:
                    self.outcome.fatal = error
                self._stopping = True
                self._finish_failed(request, error, attempts, started, state)
                return
            if not isinstance(error, RetryableError | ModelUnavailable):
                self._finish_failed(request, error, attempts, started, state)
                return
            # Retryable (or a channel that vanished mid-run): wait and try again, within bounds.
            now = time.monotonic()
            if state.successes != progress[0]:
                progress = (state.successes, now)
            if isinstance(error, RateLimited):
                over = now - progress[1] >= self._retry.max_rate_limited_s
            else:
                retry_started = retry_started if retry_started is not None else now
                over = (
                    attempts - limited > self._retry.max_retries
                    or now - retry_started >= self._retry.max_retry_time_s
                )
            if over or self._stopping:
                self._finish_failed(request, error, attempts, started, state)
                return
            await self._sleep(self._retry.delay(attempts, error))

    def _finish_failed(
        self,
        request: Request,
        error: RequestError,
        attempts: int,
        started: float,
        state: ModelState,
    ) -> None:
        state.last_done = time.time()
        self._on_result(_failed(request, error, attempts, started))


def _ok(request: Request, completion: Completion, attempts: int, started: float) -> Result:
    parsed: str | None = None
    valid: bool | None = None
    if request.model.response_schema is not None:
        from batchrun.scoring import check_structured

        parsed, valid = check_structured(completion.text, request.model.response_schema)
    return Result(
        prompt_id=request.prompt_id,
        model=request.model.name,
        model_id=request.model.model_id,
        sample=request.sample,
        request_key=request.key,
        status="ok",
        attempts=attempts,
        started_at=started,
        finished_at=time.time(),
        response=completion.text,
        reasoning=completion.reasoning,
        finish_reason=completion.finish_reason,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        total_tokens=completion.total_tokens,
        cached_tokens=completion.cached_tokens,
        reasoning_tokens=completion.reasoning_tokens,
        latency_s=completion.latency_s,
        ttft_s=completion.ttft_s,
        time_to_last_token_s=completion.last_token_s,
        output_tokens_per_s=_tokens_per_s(completion),
        tool_calls=completion.tool_calls,
        embedding=completion.embedding,
        parsed=parsed,
        parsed_valid=valid,
        http_status=completion.http_status,
        response_id=completion.response_id,
        served_model=completion.served_model,
        gateway_request_id=completion.gateway_request_id,
    )


def _tokens_per_s(completion: Completion) -> float | None:
    """Output tokens a second between the first and the last token of a stream."""
    first, last = completion.ttft_s, completion.last_token_s
    if first is None or last is None or last <= first or not completion.completion_tokens:
        return None
    return completion.completion_tokens / (last - first)


def _failed(request: Request, error: RequestError, attempts: int, started: float) -> Result:
    return _error_row(
        request, attempts, started, error.error_type, error.message, error.http_status
    )


def _skipped(request: Request, reason: str) -> Result:
    return _error_row(
        request,
        0,
        time.time(),
        "model_unavailable",
        f"not sent: the model was stopped after repeated failures ({reason})",
        None,
    )


def _error_row(
    request: Request,
    attempts: int,
    started: float,
    error_type: str,
    message: str,
    http_status: int | None,
) -> Result:
    return Result(
        prompt_id=request.prompt_id,
        model=request.model.name,
        model_id=request.model.model_id,
        sample=request.sample,
        request_key=request.key,
        status="error",
        attempts=attempts,
        started_at=started,
        finished_at=time.time(),
        error_type=error_type,
        error_message=message,
        http_status=http_status,
    )
