"""limits.share: the limits of one key kept in a real Redis for every process that uses it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import redis
from conftest import KEY_ENV, TEST_KEY, invoke, job_dict, make_prompts, write_job
from services import RedisServer, free_port

from batchrun.gateway import GatewayThread
from batchrun.shared_limits import SharedLimits, SharedScope, scope_prefix


def _limits(url: str, rpm: float | None = None, concurrency: int = 100) -> SharedLimits:
    """What one process builds for the key ``sk-x`` and the model ``m``."""
    key = SharedScope(scope_prefix("http://gw/v1", "sk-x", None), concurrency, None, None)
    model = SharedScope(scope_prefix("http://gw/v1", "sk-x", "m"), concurrency, rpm, None)
    return SharedLimits(url, key, {"m": model})


def test_two_processes_share_one_rpm(redis_url: str) -> None:
    """Two limiters on one key together keep one schedule: 6,000 rpm is one slot per 10 ms."""

    async def scenario() -> list[float]:
        first, second = _limits(redis_url, rpm=6000), _limits(redis_url, rpm=6000)
        await first.connect()
        await second.connect()
        granted: list[float] = []

        async def take(limits: SharedLimits) -> None:
            for _ in range(15):
                lease = await limits.acquire("m", 1)
                granted.append(time.monotonic())
                limits.release(lease)

        await asyncio.gather(take(first), take(second))
        await first.close()
        await second.close()
        return sorted(granted)

    granted = asyncio.run(scenario())
    # 30 slots 10 ms apart span at least 290 ms; alone, each would have taken 140 ms.
    assert granted[-1] - granted[0] >= 0.29 * 0.95


def test_shared_concurrency_counts_every_process(redis_url: str) -> None:
    """Concurrency 2 for the key: a second process waits while the first holds both places."""

    async def scenario() -> tuple[bool, bool]:
        first, second = _limits(redis_url, concurrency=2), _limits(redis_url, concurrency=2)
        await first.connect()
        await second.connect()
        held = [await first.acquire("m", 1), await first.acquire("m", 1)]
        waiting = asyncio.ensure_future(second.acquire("m", 1))
        await asyncio.sleep(0.2)
        blocked = not waiting.done()
        first.release(held[0])
        lease = await asyncio.wait_for(waiting, 2)
        second.release(lease)
        first.release(held[1])
        await first.close()
        await second.close()
        return blocked, bool(lease)

    assert asyncio.run(scenario()) == (True, True)


def test_retry_after_one_process_met_pauses_the_others(redis_url: str) -> None:
    """A 429 with Retry-After: 0.5 s met by one process holds the next request of another."""

    async def scenario() -> float:
        first, second = _limits(redis_url), _limits(redis_url)
        await first.connect()
        await second.connect()
        first.limited("m", 0.5, None)
        await asyncio.sleep(0.05)
        started = time.monotonic()
        second.release(await second.acquire("m", 1))
        waited = time.monotonic() - started
        await first.close()
        await second.close()
        return waited

    assert asyncio.run(scenario()) >= 0.4


def test_learned_pace_is_shared(redis_url: str) -> None:
    """A pace of 600 a minute learned by one process spaces another's requests 100 ms apart."""

    async def scenario() -> float:
        first, second = _limits(redis_url), _limits(redis_url)
        await first.connect()
        await second.connect()
        first.limited("m", None, 600.0)
        await asyncio.sleep(0.05)
        started = time.monotonic()
        for _ in range(4):
            second.release(await second.acquire("m", 1))
        spent = time.monotonic() - started
        await first.close()
        await second.close()
        return spent

    assert asyncio.run(scenario()) >= 0.3 * 0.95


def test_redis_lost_mid_run_stops_then_resumes(redis_server: RedisServer, redis_url: str) -> None:
    """Redis killed: acquire waits (nothing goes) until it is back, and the wait is counted."""

    async def scenario() -> tuple[bool, float]:
        limits = _limits(redis_url, rpm=60000)
        await limits.connect()
        limits.release(await limits.acquire("m", 1))
        redis_server.stop()
        pending = asyncio.ensure_future(limits.acquire("m", 1))
        await asyncio.sleep(0.6)
        held_back = not pending.done()
        redis_server.start()
        limits.release(await asyncio.wait_for(pending, 10))
        await limits.close()
        return held_back, limits.waited_s

    held_back, waited = asyncio.run(scenario())
    assert held_back
    assert waited >= 0.5


def test_redis_never_holds_the_key(redis_url: str) -> None:
    """Scope names are hashes: no Redis key or value holds the API key."""

    async def scenario() -> None:
        limits = _limits(redis_url, rpm=60000, concurrency=4)
        await limits.connect()
        lease = await limits.acquire("m", 1)
        limits.limited("m", 1.0, 600.0)
        await asyncio.sleep(0.05)
        limits.release(lease)
        await limits.close()

    asyncio.run(scenario())
    client = redis.Redis.from_url(redis_url)
    names = [name.decode() for name in client.keys("*")]
    assert names, "the scenario stored nothing"
    dump = " ".join(names) + " ".join(str(client.dump(n)) for n in names)
    client.close()
    assert "sk-x" not in dump


def test_unreachable_share_exits_2_before_sending(gateway: GatewayThread, tmp_path: Path) -> None:
    """limits.share on a port where nothing listens: exit 2, one line, no request sent."""
    share = f"redis://127.0.0.1:{free_port()}/0"
    limits = {"concurrency": 4, "share": share}
    job = write_job(tmp_path / "job.yaml", job_dict(gateway.url, limits=limits))
    result = invoke("run", str(job))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if "limits.share" in line]
    assert len(lines) == 1 and "cannot reach redis://127.0.0.1" in lines[0]
    assert gateway.gateway.stats.requests == 0


def _shard_job(folder: Path, url: str, share: str | None, prompts: int) -> Path:
    limits: dict[str, Any] = {"concurrency": 8, "adaptive": False, "max_retries": 0}
    if share is not None:
        limits["share"] = share
    make_prompts(folder / "prompts.parquet", prompts)
    job = job_dict(url, models=[{"id": "model-a", "rpm": 1200}], limits=limits)
    job["input"]["path"] = str(folder / "prompts.parquet")
    job["output"]["path"] = str(folder / "out" / "results.parquet")
    return write_job(folder / "job.yaml", job)


def _run_shards(job: Path) -> list[dict[str, Any]]:
    env = {KEY_ENV: TEST_KEY, "PYTHONPATH": str(Path(__file__).parents[1])}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "batchrun",
                "run",
                str(job),
                "--json",
                "--quiet",
                "--shard",
                f"{i}/2",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**_base_env(), **env},
        )
        for i in range(2)
    ]
    return [json.loads(p.communicate(timeout=120)[0]) for p in procs]


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "alone"])
def test_two_shards_on_one_key_meet_no_429_when_shared(
    shared: bool,
    redis_url: str,
    start_gateway: Callable[..., GatewayThread],
    tmp_path: Path,
) -> None:
    """Two shard processes, 1,200 rpm declared, a gateway counting 1,200 rpm over 5 s.

    Shared, together they keep the limit and meet no 429; alone, each keeps it
    by itself and together they go over (the 429s show it).
    """
    gateway = start_gateway(model_rpm={"model-a": 1200}, rate_limit_window_s=5.0)
    job = _shard_job(tmp_path, gateway.url, redis_url if shared else None, 120)
    summaries = _run_shards(job)
    limited = sum(row["rate_limited"] for s in summaries for row in s["models"])
    rows = sum(pl.read_parquet(s["output"]).height for s in summaries)
    if shared:
        assert limited == 0
        assert rows == 120
        assert all(s["share_wait_s"] == 0 for s in summaries)
    else:
        assert limited > 0


def test_no_burst_when_redis_returns(redis_server: RedisServer, redis_url: str) -> None:
    """Requests held while Redis was away go out on the shared schedule, not all at once.

    1,200 rpm is one slot per ~51 ms: at most about 10 grants in the first half second
    after Redis returns (the old code granted every held request there at once).
    """
    import threading

    async def scenario() -> list[float]:
        first, second = _limits(redis_url, rpm=1200), _limits(redis_url, rpm=1200)
        await first.connect()
        await second.connect()
        started = time.monotonic()
        back: list[float] = []
        granted: list[float] = []

        async def worker(limits: SharedLimits) -> None:
            while time.monotonic() - started < 3.5:
                lease = await limits.acquire("m", 1)
                granted.append(time.monotonic())
                limits.release(lease)

        def outage() -> None:
            time.sleep(1.0)
            redis_server.stop()
            time.sleep(1.0)
            redis_server.start()
            back.append(time.monotonic())

        threading.Thread(target=outage).start()
        await asyncio.gather(*(worker(limits) for limits in (first, second) for _ in range(8)))
        await first.close()
        await second.close()
        return [t - back[0] for t in granted if t >= back[0]]

    after = asyncio.run(scenario())
    assert len([t for t in after if t < 0.5]) <= 12
