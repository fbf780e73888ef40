"""kill -9 three times during a 5,000-request job, then rerun: prints the figures of issue 14.

    python benchmarks/resume.py [--seed N]

batchrun runs as its own process against the built-in gateway in another
process (100 ms latency, concurrency 50). Each run is killed with SIGKILL
at a random point after it starts sending: the first within its first
second, the others within its first four. A final rerun completes the job.
It must leave 5,000 ok rows with 5,000 distinct keys, and the requests sent
again must be at most those in flight at the kills (3 x 50 = 150 here).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
from common import KEY_ENV, gateway_process, gateway_stats, run_batchrun, table, write_job

ROWS = 2500  # x 2 models = 5,000 requests
CONCURRENCY = 50
LATENCY_MS = 100


def in_flight(stats: dict[str, Any]) -> int:
    """Requests the gateway has received but not answered yet."""
    return int(stats["requests"]) - sum(int(n) for n in stats["by_status"].values())


def kill_once(job: Path, url: str, draw: random.Random, first: bool) -> tuple[float, int, int]:
    """Start a run and SIGKILL it at a random point.

    Returns the seconds after its first request, the requests received so
    far, and those in flight (received, not yet answered) at the kill.
    """
    before = gateway_stats(url)["requests"]
    process = subprocess.Popen(
        [sys.executable, "-m", "batchrun", "run", str(job), "--quiet"],
        env={**os.environ, KEY_ENV: "sk-bench"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while gateway_stats(url)["requests"] == before:
        if process.poll() is not None:
            raise SystemExit("batchrun ended before it sent anything")
        time.sleep(0.01)
    after = draw.uniform(0.0, 1.0) if first else draw.uniform(1.0, 4.0)
    time.sleep(after)
    process.kill()
    stats = gateway_stats(url)  # those in flight are still being answered, to a dead socket
    process.wait()
    return after, int(stats["requests"]), in_flight(stats)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=None, help="the kill points' seed")
    seed = parser.parse_args().seed
    seed = seed if seed is not None else random.randrange(1_000_000)
    draw = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp, gateway_process(latency_ms=LATENCY_MS) as url:
        folder = Path(tmp)
        output = folder / "results.parquet"
        job = write_job(
            folder, url, ROWS, limits={"concurrency": CONCURRENCY}, output={"path": str(output)}
        )
        rows = [(f"step (seed {seed})", "killed after s", "requests received", "in flight")]
        flying_total = 0
        for kill in range(1, 4):
            after, received, flying = kill_once(job, url, draw, first=kill == 1)
            flying_total += flying
            rows.append((f"kill -9 #{kill}", f"{after:.2f}", str(received), str(flying)))
        code, seconds, _ = run_batchrun(job)
        frame = pl.read_parquet(output)
        sent = gateway_stats(url)["requests"]
        rows.append(("final rerun", f"exit {code}, {seconds:.1f} s", str(sent), ""))
        print(table(rows))
        print()
        print(
            table(
                [
                    ("figure", "value"),
                    ("ok rows", str(frame.filter(pl.col("status") == "ok").height)),
                    ("distinct request keys", str(frame["request_key"].n_unique())),
                    ("requests the gateway received", str(sent)),
                    ("requests sent again", str(sent - 2 * ROWS)),
                    ("in flight at the kills", str(flying_total)),
                    ("bound: 3 kills x concurrency", str(3 * CONCURRENCY)),
                ]
            )
        )
        rerun_code, rerun_s, _ = run_batchrun(job)
        print(
            table(
                [
                    ("rerun of the completed job", "value"),
                    ("exit code", str(rerun_code)),
                    ("requests sent", str(gateway_stats(url)["requests"] - sent)),
                    ("wall s", f"{rerun_s:.2f}"),
                ]
            )
        )


if __name__ == "__main__":
    main()
