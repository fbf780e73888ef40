"""kill -9 three times during a 5,000-request job, then rerun: prints the figures of issue 4.

    python benchmarks/resume.py

batchrun runs as its own process against the built-in gateway in another
process; each kill comes once more rows are on disk. The final rerun must
leave 5,000 ok rows with 5,000 distinct keys, and the gateway must have
received at most 5,000 + 3 x (one flush window) requests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from common import KEY_ENV, gateway_process, gateway_stats, run_batchrun, table, write_job

from batchrun.store import part_files

ROWS = 2500  # x 2 models = 5,000 requests
FLUSH_EVERY = 200
CONCURRENCY = 32


def rows_on_disk(output: Path) -> int:
    total = pl.read_parquet(output).height if output.exists() else 0
    return total + sum(pl.read_parquet(p).height for p in part_files(output))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, gateway_process(latency_ms=100) as url:
        folder = Path(tmp)
        output = folder / "results.parquet"
        job = write_job(
            folder,
            url,
            ROWS,
            limits={"concurrency": CONCURRENCY},
            output={"path": str(output), "flush_every": FLUSH_EVERY, "flush_seconds": 2},
        )
        rows = [("step", "rows on disk", "gateway requests so far")]
        for kill, threshold in enumerate((1000, 2500, 4000), start=1):
            process = subprocess.Popen(
                [sys.executable, "-m", "batchrun", "run", str(job), "--quiet"],
                env={**os.environ, KEY_ENV: "sk-bench"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            while rows_on_disk(output) < threshold and process.poll() is None:
                time.sleep(0.05)
            process.kill()
            process.wait()
            rows.append(
                (f"kill -9 #{kill}", str(rows_on_disk(output)), str(gateway_stats(url)["requests"]))
            )
        code, seconds, _ = run_batchrun(job)
        frame = pl.read_parquet(output)
        sent = gateway_stats(url)["requests"]
        rows.append(("final rerun", str(frame.height), str(sent)))
        print(table(rows))
        print()
        # Per model a flush window can hold FLUSH_EVERY results plus what was in flight.
        window = FLUSH_EVERY + CONCURRENCY
        bound = 2 * ROWS + 3 * window
        print(
            table(
                [
                    ("figure", "value"),
                    ("final exit code", str(code)),
                    ("ok rows", str(frame.filter(pl.col("status") == "ok").height)),
                    ("distinct request keys", str(frame["request_key"].n_unique())),
                    ("requests the gateway received", str(sent)),
                    ("bound: 5,000 + 3 x (flush window)", f"{bound} (window {window})"),
                    ("resent because of the kills", str(sent - 2 * ROWS)),
                    ("final rerun wall s", f"{seconds:.1f}"),
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
