"""Batch mode end to end: the issue's done-when figures, over real sockets and real Parquet.

The gateway runs as its own process (``batchrun gateway --batches``) where
the issue asks for it, so it holds batches across the runs of a test.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import invoke, job_dict, make_prompts, spawn_run, write_job

from batchrun.config import Price
from batchrun.gateway import GatewayThread
from batchrun.gateway.settings import BatchSettings
from batchrun.pricing import cost_usd
from batchrun.remote_work import record_path

OUTPUT = Path("out/results.parquet")
PRICES = {
    "model-a": {"input": 1.0, "output": 2.0},
    "claude-sonnet-4-5": {"input": 3.0, "output": 15.0},
}


@contextmanager
def gateway_process(*batch_settings: str) -> Iterator[str]:
    """``batchrun gateway --batches ...`` as its own process; its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "batchrun", "gateway", "--port", "0", "--batches", "on"]
        + [arg for setting in batch_settings for arg in ("--batches", setting)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"(http://\S+/v1)", line)
        assert found, line
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)


def created(base_url: str) -> list[dict[str, Any]]:
    """The batches the gateway holds (its ``/_sim/batches`` page)."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_sim/batches") as page:
        return list(json.load(page)["batches"])


def batch_job(base_url: str, rows: int = 50, **overrides: Any) -> None:
    """50 prompts x 2 models, one through Claude's messages format, all in mode: batch."""
    make_prompts(Path("prompts.parquet"), rows)
    settings: dict[str, Any] = {
        "mode": "batch",
        "models": ["model-a", {"id": "claude-sonnet-4-5", "api": "messages"}],
        "prices": PRICES,
        **overrides,
    }
    job = job_dict(base_url, **settings)
    write_job(Path("job.yaml"), job)


def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_done_when_submit_then_wait_collects_100_at_half_price_then_nothing_more() -> None:
    """First run submits and exits 0; --wait collects 100 ok rows at half price; a third
    run submits nothing."""
    with gateway_process("delay_s=1.5") as url:
        batch_job(url)
        first = invoke("run", "job.yaml")
        assert first.exit_code == 0, first.output
        assert "model-a: submitted 50 requests in 1 batch(es)" in first.stderr
        assert "claude-sonnet-4-5: submitted 50 requests in 1 batch(es)" in first.stderr
        assert "run `batchrun run job.yaml` again" in first.stderr
        assert len(created(url)) == 2
        assert not OUTPUT.exists() or pl.read_parquet(OUTPUT).height == 0

        waited = invoke("run", "job.yaml", "--wait")
        assert waited.exit_code == 0, waited.output
        frame = pl.read_parquet(OUTPUT)
        assert frame.height == 100 and set(frame["status"]) == {"ok"}
        assert set(frame["mode"]) == {"batch"} and frame["batch_id"].null_count() == 0
        assert frame["submitted_at"].null_count() == 0
        assert frame["latency_s"].null_count() == 100 and frame["ttft_s"].null_count() == 100
        for row in frame.iter_rows(named=True):
            online = cost_usd(
                Price(**PRICES[row["model"]]), row["prompt_tokens"], row["completion_tokens"]
            )
            assert online is not None and row["cost_usd"] == online / 2
        print(f"collected {frame.height} rows; cost ${frame['cost_usd'].sum():.6f}")

        again = invoke("run", "job.yaml")
        assert again.exit_code == 0, again.output
        assert "submitted" not in again.stderr
        assert len(created(url)) == 2
        assert not record_path(OUTPUT).exists()


@pytest.mark.parametrize("first", ["openai", "anthropic"])
def test_kill_9_while_the_provider_takes_a_batch_submits_nothing_twice(first: str) -> None:
    """Killed after the provider created a batch but before the run heard of it, the next
    run adopts that batch (OpenAI: by its metadata; Anthropic: by size and time), submits
    only the other, and loses nothing."""
    models: list[Any] = ["model-a", {"id": "claude-sonnet-4-5", "api": "messages"}]
    with gateway_process("delay_s=0.5", "accept_delay_s=3") as url:
        batch_job(url, models=models if first == "openai" else models[::-1])
        process = spawn_run("job.yaml", "--quiet")
        until(lambda: len(created(url)) == 1)
        process.kill()
        process.communicate()
        record = json.loads(record_path(OUTPUT).read_text())["jobs"]
        assert [w["remote_id"] for w in record] == [None]  # the run never heard back

        rerun = invoke("run", "job.yaml", "--wait")
        assert rerun.exit_code == 0, rerun.output
        assert "submitted by a run that was cut off: kept" in rerun.stderr
        assert len(created(url)) == 2  # one per model: nothing submitted twice
        frame = pl.read_parquet(OUTPUT)
        assert frame.height == 100 and set(frame["status"]) == {"ok"}
        assert frame["request_key"].n_unique() == 100


def test_kill_9_while_waiting_loses_nothing() -> None:
    """Killed while --wait polls, the next run collects both batches without resubmitting."""
    with gateway_process("delay_s=2") as url:
        batch_job(url)
        process = spawn_run("job.yaml", "--wait", "--quiet")
        until(lambda: len(created(url)) == 2 and record_path(OUTPUT).exists())
        until(lambda: all(w["remote_id"] for w in _works()))
        process.kill()
        process.communicate()
        rerun = invoke("run", "job.yaml", "--wait")
        assert rerun.exit_code == 0, rerun.output
        assert len(created(url)) == 2
        frame = pl.read_parquet(OUTPUT)
        assert frame.height == 100 and set(frame["status"]) == {"ok"}


def _works() -> list[dict[str, Any]]:
    try:
        return list(json.loads(record_path(OUTPUT).read_text())["jobs"])
    except (FileNotFoundError, ValueError):
        return []


def test_expired_batch_keeps_its_30_answers_and_resubmits_only_the_70(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """A batch of 100 that expires with 30 answered: the next run keeps the 30 and
    submits a batch of exactly the 70 others; a run after it completes all 100."""
    gw = start_gateway(batches=BatchSettings(expire_batches=1, expire_done=30))
    batch_job(gw.url, rows=100, models=["model-a"])
    assert invoke("run", "job.yaml").exit_code == 0
    second = invoke("run", "job.yaml")
    assert second.exit_code == 0, second.output
    frame = pl.read_parquet(OUTPUT)
    assert (frame["status"] == "ok").sum() == 30
    assert set(frame.filter(pl.col("status") != "ok")["error_type"]) == {"batch_expired"}
    store = gw.gateway._batches
    assert store is not None
    sizes = [len(b.lines) for b in store.store.batches.values()]
    assert sizes == [100, 70]
    kept = set(frame.filter(pl.col("status") == "ok")["request_key"])
    resubmitted = {line["custom_id"] for line in list(store.store.batches.values())[1].lines}
    assert not kept & resubmitted
    third = invoke("run", "job.yaml")
    assert third.exit_code == 0, third.output
    final = pl.read_parquet(OUTPUT)
    assert final.height == 100 and set(final["status"]) == {"ok"}


def test_wait_draws_a_bar_of_the_batches_request_counts(tmp_path: Path) -> None:
    """On a terminal --wait shows a "batch" bar over the 100 requests, messages above it."""
    from test_terminal import run_in_terminal

    with gateway_process("delay_s=1.5") as url:
        batch_job(url)
        screen = run_in_terminal(["run", "job.yaml", "--wait"], tmp_path)
    segments = re.split(r"[\r\n]", screen)
    bars = [s for s in segments if s.lstrip().startswith("batch:") and "%|" in s]
    assert bars, screen
    assert any("/100" in bar and "succeeded" in bar for bar in bars), bars
    assert "100/100" in bars[-1]
    for segment in segments:
        assert not ("%|" in segment and "batchrun:" in segment), segment
    submitted = screen.index("submitted 50 requests")
    assert submitted < screen.index("%|")  # said before waiting
