"""Helpers shared by the benchmarks: a gateway in its own process, jobs, timed runs."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import yaml

KEY_ENV = "BATCHRUN_BENCH_KEY"


def _serve(settings: dict[str, Any], queue: Any, cpu: int | None) -> None:
    import asyncio

    from batchrun.gateway import Gateway, GatewaySettings, serve

    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})

    async def main() -> None:
        async with serve(Gateway(GatewaySettings(**settings))) as url:
            queue.put(url)
            await asyncio.Event().wait()

    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


@contextmanager
def gateway_process(cpu: int | None = None, **settings: Any) -> Iterator[str]:
    """Run the built-in gateway in a child process (pinned to ``cpu``); yield its URL."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_serve, args=(settings, queue, cpu), daemon=True)
    process.start()
    try:
        yield queue.get(timeout=30)
    finally:
        process.terminate()
        process.join(5)


def gateway_stats(url: str) -> dict[str, Any]:
    """The gateway's counters."""
    with urllib.request.urlopen(url.removesuffix("/v1") + "/_sim/stats") as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def write_prompts(path: Path, rows: int) -> None:
    """``rows`` arithmetic prompts with ids."""
    pl.DataFrame(
        {
            "id": [f"q{i:07d}" for i in range(rows)],
            "question": [f"What is {i} + {i % 97}?" for i in range(rows)],
        }
    ).write_parquet(path)


def write_job(folder: Path, url: str, rows: int, **overrides: Any) -> Path:
    """A job for ``rows`` prompts against the gateway at ``url``."""
    folder.mkdir(parents=True, exist_ok=True)
    prompts = folder / "prompts.parquet"
    if not prompts.exists():
        write_prompts(prompts, rows)
    job: dict[str, Any] = {
        "name": "bench",
        "provider": {"base_url": url, "api_key_env": KEY_ENV},
        "input": {"path": str(prompts), "id_column": "id"},
        "prompt": {"user": "{{ question }}"},
        "models": ["model-a", "model-b"],
        "params": {"max_tokens": 16},
        "limits": {"concurrency": 32},
        "output": {"path": str(folder / "results.parquet")},
    }
    job.update(overrides)
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def run_batchrun(job: Path, *args: str, key: str = "sk-bench") -> tuple[int, float, dict[str, Any]]:
    """Run ``batchrun run JOB --json``; return exit code, wall seconds and the summary."""
    env = {**os.environ, KEY_ENV: key}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "batchrun", "run", str(job), "--json", "--quiet", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - started
    try:
        summary = json.loads(done.stdout) if done.stdout.strip() else {}
    except ValueError:
        summary = {"stdout": done.stdout}
    summary["stderr"] = done.stderr.strip().splitlines()[-3:]
    return done.returncode, seconds, summary


def table(rows: list[tuple[str, ...]]) -> str:
    """Rows of strings as aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
