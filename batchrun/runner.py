"""The asyncio loop: scheduling across models, retries, stopping, and reporting results.

``run_requests`` sends every request it is given through a ``Sender`` with a
fixed pool of workers (the run's concurrency), each model additionally held
to its own concurrency. Every request it takes ends in exactly one
``Result`` handed to ``on_result``: ok, or failed with its classified error.
Retries are decided by the error's class, never by catching everything.
A fatal error (bad key, no balance) stops new sends; what is in flight
finishes. A model the gateway cannot serve stops after a short
confirmation while the others go on.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from batchrun.client import Completion, Sender
from batchrun.errors import (
    FatalRequestError,
    ModelUnavailable,
    RequestError,
    RetryableError,
)
from batchrun.plan import Request
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

    def delay(self, retry: int, error: RetryableError) -> float:
        """Seconds to wait before retry number ``retry`` (1-based), with full jitter."""
        if error.retry_after is not None:
            return error.retry_after + random.uniform(0, 0.1 * self.base_delay_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass
class ModelState:
    """What the run knows about one model while it runs."""

    unavailable_streak: int = 0
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
    """Sends requests with bounded concurrency and turns each into a ``Result``."""

    def __init__(
        self,
        sender: Sender,
        on_result: Callable[[Result], None],
        *,
        concurrency: int,
        model_concurrency: dict[str, int] | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._sender = sender
        self._on_result = on_result
        self._concurrency = concurrency
        self._model_limits = {
            name: asyncio.Semaphore(limit) for name, limit in (model_concurrency or {}).items()
        }
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._stopping = asyncio.Event()
        self.outcome = RunOutcome()

    def stop(self) -> None:
        """Take no new requests; those in flight finish."""
        self._stopping.set()
        self.outcome.interrupted = True

    @property
    def stopping(self) -> bool:
        """Whether the run has been told to stop (or stopped itself)."""
        return self._stopping.is_set()

    async def run(self, requests: Iterable[Request]) -> RunOutcome:
        """Send every request (until stopped) and return how the run ended."""
        self.outcome.started = time.time()
        source = iter(requests)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self._concurrency):
                    group.create_task(self._worker(source))
        finally:
            self.outcome.finished = time.time()
        return self.outcome

    async def _worker(self, source: Iterator[Request]) -> None:
        for request in source:
            if self._stopping.is_set():
                return
            state = self._state(request.model.name)
            if state.stopped_reason is not None:
                self._on_result(_skipped(request, state.stopped_reason))
                continue
            limit = self._model_limits.get(request.model.name)
            if limit is None:
                await self._send(request, state)
            else:
                async with limit:
                    await self._send(request, state)

    def _state(self, model: str) -> ModelState:
        state = self.outcome.models.get(model)
        if state is None:
            state = self.outcome.models[model] = ModelState()
        return state

    async def _send(self, request: Request, state: ModelState) -> None:
        started = time.time()
        attempts = 0
        retry_started: float | None = None
        while True:
            attempts += 1
            state.sent += 1
            try:
                completion = await self._sender.complete(request)
            except RetryableError as error:
                if error.error_type == "rate_limited":
                    state.rate_limited += 1
                now = time.monotonic()
                retry_started = retry_started if retry_started is not None else now
                spent = now - retry_started
                if (
                    attempts > self._retry.max_retries
                    or spent >= self._retry.max_retry_time_s
                    or self._stopping.is_set()
                ):
                    self._on_result(_failed(request, error, attempts, started))
                    return
                await self._sleep(self._retry.delay(attempts, error))
                continue
            except ModelUnavailable as error:
                state.unavailable_streak += 1
                if state.unavailable_streak >= self._retry.model_unavailable_confirmations:
                    state.stopped_reason = error.message
                self._on_result(_failed(request, error, attempts, started))
                return
            except FatalRequestError as error:
                if self.outcome.fatal is None:
                    self.outcome.fatal = error
                self._stopping.set()
                self._on_result(_failed(request, error, attempts, started))
                return
            except RequestError as error:
                self._on_result(_failed(request, error, attempts, started))
                return
            state.unavailable_streak = 0
            self._on_result(_ok(request, completion, attempts, started))
            return


def _ok(request: Request, completion: Completion, attempts: int, started: float) -> Result:
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
        http_status=completion.http_status,
        response_id=completion.response_id,
        served_model=completion.served_model,
        gateway_request_id=completion.gateway_request_id,
    )


def _failed(request: Request, error: RequestError, attempts: int, started: float) -> Result:
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
        error_type=error.error_type,
        error_message=error.message,
        http_status=error.http_status,
    )


def _skipped(request: Request, reason: str) -> Result:
    now = time.time()
    return Result(
        prompt_id=request.prompt_id,
        model=request.model.name,
        model_id=request.model.model_id,
        sample=request.sample,
        request_key=request.key,
        status="error",
        attempts=0,
        started_at=now,
        finished_at=now,
        error_type="model_unavailable",
        error_message=f"not sent: the model was stopped after repeated failures ({reason})",
    )
