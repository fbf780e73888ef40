"""Plan building on a large prompt set: `batchrun validate` wall and CPU time, and `prepare` alone.

    python benchmarks/plan.py [--rows 100000] [--repeats 5] [CHECKOUT ...]

Each CHECKOUT is a folder holding a `batchrun` package (default: this
repository); with several, their runs alternate, so two copies of the code
(one with a change, one without) can be compared on a noisy machine. The
job is the overhead benchmark's, with a system turn: plain ``{{ column }}``
templates, the case ``templates.render_columns`` renders without Jinja.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import KEY_ENV, write_job

PREPARE = (
    "import sys, time\n"
    "started = time.perf_counter()\n"
    "from batchrun.prepare import prepare\n"
    "prepare(sys.argv[1], require_key=False)\n"
    "print(time.perf_counter() - started)\n"
)


def once(checkout: str, job: Path) -> tuple[float, float, float]:
    """Wall and CPU seconds of `batchrun validate JOB`, and seconds of `prepare` in-process."""
    env = {**os.environ, "PYTHONPATH": checkout, KEY_ENV: "sk-bench"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "batchrun", "validate", str(job)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"batchrun validate failed in {checkout}")
    done = subprocess.run(
        [sys.executable, "-c", PREPARE, str(job)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return wall, usage.ru_utime + usage.ru_stime, float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("checkouts", nargs="*", default=[str(Path(__file__).resolve().parents[1])])
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, float, float]]] = {c: [] for c in args.checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        prompt = {"system": "You are brief.", "user": "Question: {{ question }}\nAnswer:"}
        job = write_job(Path(tmp) / "plan", "http://127.0.0.1:9/v1", args.rows, prompt=prompt)
        for _ in range(args.repeats):
            for checkout in args.checkouts:
                figures[checkout].append(once(checkout, job))
    print(
        f"{args.rows:,} rows, median of {args.repeats}: validate wall s, validate CPU s, prepare s"
    )
    for checkout, runs in figures.items():
        wall, cpu, prepare = (statistics.median(x) for x in zip(*runs, strict=True))
        print(f"{checkout}: {wall:.3f}  {cpu:.3f}  {prepare:.3f}")


if __name__ == "__main__":
    main()
