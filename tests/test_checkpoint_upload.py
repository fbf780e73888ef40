"""Checkpoint uploads: an object-storage output is uploaded whole while its run sends."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import obstore
import polars as pl
import pytest
import yaml
from conftest import KEY_ENV, TEST_KEY, invoke, job_dict, make_prompts

from batchrun.checkpoint_upload import Checkpoints
from batchrun.gateway import GatewayThread
from batchrun.objstore import store_of

URL = "s3://bucket/out.parquet"
PROMPTS = 40
ROWS = 2 * PROMPTS  # two models


def _scheduled(take: Any, interval_s: float, notes: list[str], wait_s: float) -> Checkpoints:
    """Run a ``Checkpoints`` for ``wait_s`` seconds with ``take``, then close it."""

    async def go() -> Checkpoints:
        checkpoints = Checkpoints(interval_s, take, notes.append, URL)
        checkpoints.start()
        await asyncio.sleep(wait_s)
        await checkpoints.close()
        return checkpoints

    return asyncio.run(go())


def test_slow_upload_is_never_doubled_and_never_stalls_the_loop() -> None:
    """An upload slower than the interval is skipped over, never doubled, never blocks the loop."""
    release = threading.Event()
    calls: list[float] = []
    running = [0, 0]  # now, most at once

    def take() -> int:
        running[0] += 1
        running[1] = max(running)
        calls.append(time.monotonic())
        if len(calls) == 1:
            release.wait(5)
        running[0] -= 1
        return 1

    async def go() -> tuple[Checkpoints, float]:
        checkpoints = Checkpoints(0.02, take, notes.append, URL)
        checkpoints.start()
        started = time.monotonic()
        for _ in range(30):  # 0.3 s of 10 ms ticks, as sending would tick
            await asyncio.sleep(0.01)
        lag = time.monotonic() - started - 0.3
        assert len(calls) == 1 and checkpoints.skipped >= 5
        release.set()
        await asyncio.sleep(0.1)
        await checkpoints.close()
        return checkpoints, lag

    notes: list[str] = []
    checkpoints, lag = asyncio.run(go())
    assert lag < 1.0  # the upload blocks for 5 s: had it run on the loop, the loop would wait
    assert running[1] == 1
    assert len(calls) >= 2 and checkpoints.uploaded == len(calls)
    assert any("skipped while an upload" in note for note in notes)


def test_failed_checkpoint_is_a_warning_and_the_next_is_tried() -> None:
    """A store that refuses one checkpoint: one warning line, and the next checkpoint uploads."""
    outcomes: list[int | OSError] = [OSError("cannot upload: the store said no"), 5, 5, 5, 5]

    def take() -> int | None:
        outcome = outcomes.pop(0) if outcomes else None
        if isinstance(outcome, OSError):
            raise outcome
        return outcome

    notes: list[str] = []
    checkpoints = _scheduled(take, 0.02, notes, 0.2)
    assert [n for n in notes if "failed" in n] == [
        f"warning: a checkpoint upload to {URL} failed (cannot upload: the store said no); "
        "the run goes on and uploads its output when it ends"
    ]
    assert checkpoints.uploaded >= 1


def test_checkpoint_waits_for_the_interval_and_stops_when_closed() -> None:
    """Nothing is taken before the first interval, nor after ``close``."""
    calls: list[float] = []
    _scheduled(lambda: calls.append(time.monotonic()) or 1, 0.5, [], 0.1)
    assert calls == []


def test_bug_in_a_checkpoint_is_raised_not_warned() -> None:
    """Only OSError is the store's or the disk's; anything else is a bug and is raised."""

    def take() -> int:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        _scheduled(take, 0.02, [], 0.1)


def _job(tmp_path: Path, gateway: GatewayThread, bucket: str, checkpoint_s: float) -> Path:
    local = make_prompts(tmp_path / "source.parquet", PROMPTS)
    obstore.put(store_of(f"s3://{bucket}"), "in/prompts.parquet", local)
    job = job_dict(
        gateway.url,
        input={"path": f"s3://{bucket}/in/prompts.parquet", "id_column": "id"},
        output={
            "path": f"s3://{bucket}/results/out.parquet",
            "flush_every": 5,
            "flush_seconds": 0.1,
            "checkpoint_s": checkpoint_s,
        },
        limits={"concurrency": 2, "max_retries": 0},
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def _uploaded(bucket: str) -> pl.DataFrame | None:
    """The output object as a reader sees it now (None while there is none)."""
    try:
        data = obstore.get(store_of(f"s3://{bucket}"), "results/out.parquet").bytes()
    except FileNotFoundError:
        return None
    return pl.read_parquet(io.BytesIO(bytes(data)))


def _start(job: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, KEY_ENV: TEST_KEY, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(job), "--quiet"], env=env)


def _keys(bucket: str) -> list[str]:
    listed = obstore.list(store_of(f"s3://{bucket}"), prefix="").collect()
    return sorted(item["path"] for item in listed)


def test_checkpoints_upload_readable_partial_output_while_the_run_goes(
    start_gateway: Any, s3_bucket: str, tmp_path: Path
) -> None:
    """Read while the run sends: whole files only, rows growing, all rows once at the end."""
    gateway = start_gateway(latency_ms=40)
    run = _start(_job(tmp_path, gateway, s3_bucket, checkpoint_s=0.2))
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:
        frame = _uploaded(s3_bucket)
        if frame is not None:
            assert frame["request_key"].n_unique() == frame.height
            seen.append(frame.height)
        time.sleep(0.03)
    assert run.wait(30) == 0
    partial = [rows for rows in seen if 0 < rows < ROWS]
    assert len(set(partial)) >= 2, seen  # several checkpoints landed before the end
    assert seen == sorted(seen)
    final = _uploaded(s3_bucket)
    assert final is not None and final.height == ROWS
    assert final["request_key"].n_unique() == ROWS and set(final["status"]) == {"ok"}
    assert _keys(s3_bucket) == ["in/prompts.parquet", "results/out.parquet"]


def test_kill_9_leaves_the_last_checkpoint_and_a_new_runner_continues_from_it(
    start_gateway: Any, s3_bucket: str, tmp_path: Path
) -> None:
    """kill -9 leaves the last checkpoint at the URL; a new runner sends only the rest."""
    gateway = start_gateway(latency_ms=40)
    job = _job(tmp_path, gateway, s3_bucket, checkpoint_s=0.2)
    victim = _start(job)
    deadline = time.monotonic() + 60
    frame = None
    while victim.poll() is None and time.monotonic() < deadline:
        frame = _uploaded(s3_bucket)
        if frame is not None and frame.height >= 10:
            break
        time.sleep(0.03)
    assert victim.poll() is None, "the run ended before a checkpoint could be seen"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    left = _uploaded(s3_bucket)
    assert left is not None and 10 <= left.height < ROWS
    assert left["request_key"].n_unique() == left.height and set(left["status"]) == {"ok"}
    shutil.rmtree(tmp_path / ".batchrun-cache")  # a new runner: no local copy
    sent = gateway.gateway.stats.requests
    result = invoke("run", str(job))
    assert result.exit_code == 0, result.output
    assert gateway.gateway.stats.requests - sent == ROWS - left.height
    final = _uploaded(s3_bucket)
    assert final is not None and final.height == ROWS
    assert final["request_key"].n_unique() == ROWS
