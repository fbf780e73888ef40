"""Request deadlines: one sweep cancels what is overdue, and only that."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import polars as pl
from conftest import invoke, job_dict, write_job

from batchrun.deadlines import Deadlines
from batchrun.gateway import GatewayThread


async def _guarded(deadlines: Deadlines, seconds: float) -> str:
    """The client's pattern: arm, wait, tell an expiry from any other cancellation."""
    task = deadlines.arm()
    try:
        await asyncio.sleep(seconds)
        return "answered"
    except asyncio.CancelledError:
        if not deadlines.expired(task):
            raise
        return "timed out"
    finally:
        deadlines.disarm(task)


def test_overdue_request_times_out() -> None:
    """A request out past the timeout is ended as a timeout, not a cancellation."""

    async def main() -> tuple[str, str]:
        deadlines = Deadlines(0.05)
        deadlines.start()
        try:
            slow, fast = await asyncio.gather(_guarded(deadlines, 5), _guarded(deadlines, 0.001))
        finally:
            await deadlines.stop()
        return slow, fast

    assert asyncio.run(main()) == ("timed out", "answered")


def test_other_cancellations_pass_through() -> None:
    """Cancelling an armed request from outside is a cancellation, never a timeout."""

    async def main() -> bool:
        deadlines = Deadlines(30)
        deadlines.start()
        task = asyncio.create_task(_guarded(deadlines, 5))
        await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        finally:
            await deadlines.stop()
        return False

    assert asyncio.run(main()) is True


def test_finished_request_is_left_alone() -> None:
    """Once disarmed, a task is not cancelled by later sweeps, however long it lives."""

    async def main() -> bool:
        deadlines = Deadlines(0.02)
        deadlines.start()
        await _guarded(deadlines, 0.001)
        await asyncio.sleep(0.1)  # several sweeps past the deadline
        await deadlines.stop()
        return True

    assert asyncio.run(main()) is True


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
