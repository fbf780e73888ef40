"""Checkpoint uploads of an s3:// output: what they cost sending, what a kill -9 leaves.

    python benchmarks/checkpoints.py [--prompts 20000] [--checkpoint 1] [--repeat 2]

The built-in gateway runs in its own process and moto's S3 server in this
one, both on 127.0.0.1; every batchrun run is a process of its own.

1. cost: ``--prompts`` prompts x 2 models at latency 0, concurrency 64, to
   an s3:// output, with ``output.checkpoint_s: 0`` (upload at the end only)
   and with ``--checkpoint``, alternating, ``--repeat`` times each: the
   run's own seconds (sending to manifest, from its summary), requests a
   second, and the distinct objects a reader polling every 50 ms saw.
2. kill -9: 4,000 requests at 20 ms latency, concurrency 8, checkpoints
   every ``--checkpoint`` s, killed 2 s after the first upload: the rows a reader finds at
   the URL then; a rerun on a runner without the local copy: requests sent,
   final rows, rows twice.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl
from common import KEY_ENV, gateway_process, gateway_stats, run_batchrun, table, write_job
from shards import s3_env

BUCKET = "bench-checkpoints"


def watch(url: str, stop: threading.Event, seen: set[str]) -> None:
    """Poll ``url`` every 50 ms until ``stop``; add each version's ETag to ``seen``."""
    import obstore

    from batchrun.objstore import split, store_of

    store, key = store_of(url), split(url)[1]
    while not stop.is_set():
        with contextlib.suppress(FileNotFoundError):
            seen.add(str(obstore.head(store, key)["e_tag"]))
        time.sleep(0.05)


def cost_rows(base: Path, gateway: str, args: argparse.Namespace) -> list[tuple[str, ...]]:
    figures: dict[float, list[tuple[float, float, int]]] = {0.0: [], args.checkpoint: []}
    for attempt in range(args.repeat):
        for every in figures:
            url = f"s3://{BUCKET}/cost-{attempt}-{every:g}/results.parquet"
            output = {"path": url, "flush_seconds": 0.5, "checkpoint_s": every}
            limits = {"concurrency": 64, "adaptive": False}
            job = write_job(base / f"cost-{attempt}-{every:g}", gateway, args.prompts,
                            output=output, limits=limits)  # fmt: skip
            stop, seen = threading.Event(), set[str]()
            watcher = threading.Thread(target=watch, args=(url, stop, seen))
            watcher.start()
            code, _, summary = run_batchrun(job)
            stop.set()
            watcher.join()
            if code != 0:
                raise SystemExit(f"run failed: {summary}")
            seconds = float(summary["elapsed_s"])
            figures[every].append((seconds, 2 * args.prompts / seconds, len(seen)))
    rows = []
    for every, runs in figures.items():
        label = "at the end only" if every == 0 else f"every {every:g} s"
        rows.append((
            f"1. cost, checkpoint {label}",
            f"{statistics.median(r[0] for r in runs):.2f}",
            f"{statistics.median(r[1] for r in runs):,.0f}",
            "/".join(str(r[2]) for r in runs),
            "",
        ))  # fmt: skip
    return rows


def kill_rows(base: Path, args: argparse.Namespace) -> list[tuple[str, ...]]:
    import obstore

    from batchrun.objstore import exists, store_of

    requests = 4000
    url = f"s3://{BUCKET}/kill/results.parquet"
    with gateway_process(latency_ms=20) as gateway:
        output = {"path": url, "flush_seconds": 0.5, "checkpoint_s": args.checkpoint}
        job = write_job(base / "kill", gateway, requests // 2, output=output,
                        limits={"concurrency": 8, "adaptive": False})  # fmt: skip
        env = {**os.environ, KEY_ENV: "sk-bench"}
        victim = subprocess.Popen(
            [sys.executable, "-m", "batchrun", "run", str(job), "--quiet"], env=env
        )
        while not exists(url) and victim.poll() is None:
            time.sleep(0.05)
        time.sleep(2.0)  # a few checkpoints more
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        sent_before = gateway_stats(gateway)["requests"]
        data = obstore.get(store_of(url), "kill/results.parquet").bytes()
        left = pl.read_parquet(bytes(data))
        shutil.rmtree(base / "kill" / ".batchrun-cache")  # a new runner
        code, _, _ = run_batchrun(job)
        sent = gateway_stats(gateway)["requests"] - sent_before
    final = pl.read_parquet(url)
    twice = final.height - final["request_key"].n_unique()
    return [
        ("2. kill -9 2 s after the first upload", "", "", "",
         f"{left.height} rows at the URL after the kill (of {sent_before} sent); "
         f"rerun on a new runner: exit {code}, {sent} sent, {final.height} rows, {twice} twice"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20_000)
    parser.add_argument("--checkpoint", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    server, s3 = s3_env()
    os.environ.update(s3)
    os.environ["PYTHONPATH"] = str(Path(__file__).parents[1])
    import boto3

    boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"], region_name="us-east-1").create_bucket(
        Bucket=BUCKET
    )
    header = ("scenario", "run s", "req/s", "objects seen", "notes")
    try:
        with tempfile.TemporaryDirectory() as tmp, gateway_process() as gateway:
            rows = [header, *cost_rows(Path(tmp), gateway, args)]
            print(table(rows), flush=True)
            rows.extend(kill_rows(Path(tmp), args))
    finally:
        server.stop()
    print(f"{2 * args.prompts:,} requests at latency 0 to an s3:// output on moto")
    print(table(rows))


if __name__ == "__main__":
    main()
