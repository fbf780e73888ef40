"""Request deadlines: a request slower than limits.timeout_s ends as a timeout, and only then."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import yarl
from conftest import invoke, job_dict, write_job

from batchrun.deadlines import Deadlines
from batchrun.errors import TimeoutFailure
from batchrun.gateway import GatewayThread
from batchrun.transport import AiohttpTransport, HttpRequest


def test_slow_model_times_out_over_a_socket(
    start_gateway: Callable[..., GatewayThread], tmp_path: Path
) -> None:
    """A model slower than limits.timeout_s fails with timeout after its retries; others are ok."""
    gateway = start_gateway(model_latency_ms={"model-b": 3000})
    limits = {"concurrency": 4, "timeout_s": 0.2, "max_retries": 1, "backoff_base_s": 0.001}
    job = write_job(tmp_path / "job.yaml", job_dict(gateway.url, limits=limits))
    result = invoke("run", str(job), "--quiet")
    assert result.exit_code == 1, result.stderr
    frame = pl.read_parquet("out/results.parquet")
    slow = frame.filter(pl.col("model") == "b")
    assert slow.height == 6
    assert slow.get_column("error_type").to_list() == ["timeout"] * 6
    assert slow.get_column("attempts").to_list() == [2] * 6
    assert "limits.timeout_s" in slow.get_column("error_message")[0]
    fast = frame.filter(pl.col("model") == "model-a")
    assert fast.get_column("status").to_list() == ["ok"] * 6


KEY_HEADER = {"Authorization": "Bearer sk-test"}


def _chat(url: str) -> HttpRequest:
    body = b'{"model":"model-b","messages":[{"role":"user","content":"hi"}]}'
    return HttpRequest("POST", yarl.URL(url).join(yarl.URL("chat/completions")), KEY_HEADER, body)


def test_a_request_past_its_deadline_ends_as_a_timeout_within_a_sweep(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """The sweep cancels a request past timeout_s: a TimeoutFailure, a period late at most."""
    gateway = start_gateway(model_latency_ms={"model-b": 3000})

    async def go() -> tuple[float, int]:
        transport = AiohttpTransport(timeout_s=0.3, idle_timeout_s=0.3, headers={})
        async with transport:
            started = time.monotonic()
            with pytest.raises(TimeoutFailure, match=r"no answer within 0\.3 s"):
                await transport.send(_chat(gateway.url + "/"))
            return time.monotonic() - started, transport._deadlines.armed

    elapsed, armed = asyncio.run(go())
    assert 0.3 <= elapsed < 0.3 + 0.03 + 0.5  # the timeout, one sweep period, slack
    assert armed == 0


def test_a_cancelled_request_is_cancelled_not_timed_out(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """Cancelling a request in flight (Ctrl-C, a task group) passes the cancellation on."""
    gateway = start_gateway(model_latency_ms={"model-b": 3000})

    async def go() -> int:
        transport = AiohttpTransport(timeout_s=5.0, idle_timeout_s=5.0, headers={})
        async with transport:
            task = asyncio.create_task(transport.send(_chat(gateway.url + "/")))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return transport._deadlines.armed

    assert asyncio.run(go()) == 0


def test_a_cancel_that_meets_the_deadline_is_still_a_cancel() -> None:
    """A task cancelled from outside as its deadline passes is not turned into a timeout."""

    async def go() -> tuple[bool, bool]:
        deadlines = Deadlines(0.01)
        deadlines.start()
        outcome: dict[str, bool] = {}

        async def request(cancelled_too: bool) -> None:
            task = deadlines.arm()
            try:
                await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                outcome[str(cancelled_too)] = deadlines.expired(task)
                if cancelled_too:
                    raise
            finally:
                deadlines.disarm(task)

        alone = asyncio.create_task(request(False))
        both = asyncio.create_task(request(True))
        while not deadlines._expired >= {both}:
            await asyncio.sleep(0.001)
        both.cancel()  # the sweep cancelled it; someone else does too before it runs
        await alone
        with pytest.raises(asyncio.CancelledError):
            await both
        await deadlines.stop()
        return outcome["False"], outcome["True"]

    alone_expired, both_expired = asyncio.run(go())
    assert alone_expired is True
    assert both_expired is False
