"""batchrun's own overhead, measured against a bare aiohttp loop: prints the figures of issue 7.

    python benchmarks/run.py [--quick]

Everything runs against the built-in gateway in its own process on
127.0.0.1; where the machine has two cores the gateway is pinned to one and
the client to the other. Figures are ratios against a baseline measured in
the same run (this machine is shared and noisy):

1. overhead: 20,000 requests, latency 0, concurrency 100: `batchrun run` as a
   whole process (Parquet written) against bare.py, requests/s and
   CPU-seconds per 1,000 requests; then the CPU told apart, per process (a
   4-request run of each) and per request beyond it;
2. latency-bound: 4,000 requests, lognormal latency with mean 300 ms
   (sigma 0.5 and 0.25, and a constant 300 ms), concurrency 100: wall time
   against the ideal N x 0.3 s / 100, for batchrun, the bare loop, and a
   simulated client without any overhead (the floor the spread sets);
3. scale: peak RSS at 100,000 and at 1,000,000 requests, and the rerun of the
   completed 1,000,000-request job (requests sent, wall time);
4. start-up: `batchrun --help` wall time and whether it imports Polars or aiohttp.
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import KEY_ENV, gateway_process, gateway_stats, table, write_job

HERE = Path(__file__).resolve().parent
CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CPU = CORES[0] if len(CORES) >= 2 else None
CLIENT_CPU = CORES[1] if len(CORES) >= 2 else None


def python_env(**extra: str) -> dict[str, str]:
    """The environment for every timed process: Python's bytecode cache on, as by default.

    Some machines set PYTHONDONTWRITEBYTECODE; then every process would compile
    batchrun's modules again, a cost no installed copy pays after its first run.
    """
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def warm_up() -> None:
    """Import everything once, so compiled bytecode is cached before anything is timed."""
    subprocess.run(
        [sys.executable, "-c", "import batchrun.cli, batchrun.run, batchrun.client"],
        env=python_env(),
        check=True,
    )


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int, str]:
    """Run ``cmd`` pinned to the client core: wall s, CPU s, its own peak RSS (KiB), stdout."""

    def pin() -> None:
        if CLIENT_CPU is not None:
            os.sched_setaffinity(0, {CLIENT_CPU})

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            cmd, stdout=out, stderr=err, env=env or python_env(), preexec_fn=pin
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode not in (0, 1):
            raise SystemExit(f"{cmd} failed ({process.returncode}): {err.read()[-2000:]}")
        cpu = usage.ru_utime + usage.ru_stime
        return wall, cpu, usage.ru_maxrss, out.read()


def batchrun(job: Path) -> list[str]:
    return [sys.executable, "-m", "batchrun", "run", str(job), "--quiet"]


def overhead(base: Path, prompts: int, rounds: int) -> list[tuple[str, ...]]:
    """Bare loop and batchrun, alternated ``rounds`` times; the medians of each.

    Each round also runs both on a 4-request job, so the CPU a process
    spends whatever its size (start-up: imports, reading the job; the end)
    can be told from the CPU each request adds.
    """
    requests = prompts * 2
    rows: list[tuple[str, ...]] = [("1. overhead", "wall s", "req/s", "CPU s / 1k req")]
    env = python_env(**{KEY_ENV: "sk-bench"})
    bare: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    small: dict[str, list[float]] = {"bare": [], "batchrun": []}
    with gateway_process(cpu=SERVER_CPU) as url:
        for round_ in range(rounds):
            wall, cpu, _, _ = timed(
                [sys.executable, str(HERE / "bare.py"), url, str(prompts), "2", "100"]
            )
            bare.append((wall, cpu))
            job = write_job(
                base / f"overhead-{round_}",
                url,
                prompts,
                limits={"concurrency": 100, "adaptive": False},
            )
            before = gateway_stats(url)["requests"]
            wall, cpu, _, _ = timed(batchrun(job), env)
            sent = gateway_stats(url)["requests"] - before
            assert sent == requests, f"batchrun sent {sent}, expected {requests}"
            ours.append((wall, cpu))
            small["bare"].append(
                timed([sys.executable, str(HERE / "bare.py"), url, "2", "2", "100"])[1]
            )
            tiny = write_job(
                base / f"overhead-small-{round_}",
                url,
                2,
                limits={"concurrency": 100, "adaptive": False},
            )
            small["batchrun"].append(timed(batchrun(tiny), env)[1])
    bare_wall, bare_cpu = (statistics.median(x) for x in zip(*bare, strict=True))
    br_wall, br_cpu = (statistics.median(x) for x in zip(*ours, strict=True))
    bare_rps, br_rps = requests / bare_wall, requests / br_wall
    rows.append(
        (
            f"bare aiohttp + semaphore (median of {rounds})",
            f"{bare_wall:.2f}",
            f"{bare_rps:,.0f}",
            f"{bare_cpu / requests * 1000:.3f}",
        )
    )
    rows.append(
        (
            f"batchrun run, whole process (median of {rounds})",
            f"{br_wall:.2f}",
            f"{br_rps:,.0f}",
            f"{br_cpu / requests * 1000:.3f}",
        )
    )
    rows.append(
        ("ratio batchrun / bare", "", f"{br_rps / bare_rps:.2f} x", f"{br_cpu / bare_cpu:.2f} x")
    )
    rows.append(
        (
            "each round, batchrun / bare req/s",
            "",
            " ".join(f"{b[0] / o[0]:.2f}" for b, o in zip(bare, ours, strict=True)),
            "",
        )
    )
    return rows + split_rows(requests, bare_cpu, br_cpu, small)


def split_rows(
    requests: int, bare_cpu: float, br_cpu: float, small: dict[str, list[float]]
) -> list[tuple[str, ...]]:
    """The whole run's CPU told apart: per process (the 4-request run) and per request beyond it."""
    fixed = {name: statistics.median(values) for name, values in small.items()}
    per_request = {
        "bare": (bare_cpu - fixed["bare"]) / (requests - 4) * 1000,
        "batchrun": (br_cpu - fixed["batchrun"]) / (requests - 4) * 1000,
    }
    return [
        ("  CPU per process (a 4-request run), s", "", "", ""),
        ("    bare / batchrun", "", "", f"{fixed['bare']:.2f} / {fixed['batchrun']:.2f}"),
        ("  CPU per request beyond it, ms", "", "", ""),
        (
            "    bare / batchrun (ratio)",
            "",
            "",
            f"{per_request['bare']:.3f} / {per_request['batchrun']:.3f} "
            f"({per_request['batchrun'] / per_request['bare']:.2f} x)",
        ),
    ]


def floor_s(requests: int, concurrency: int, mean_s: float, sigma: float, runs: int = 20) -> float:
    """The mean makespan of ``requests`` lognormal latencies on ``concurrency`` places.

    A client with no overhead at all that keeps every place busy (and sends
    nothing twice) finishes no sooner: the ideal N x mean / concurrency
    leaves out that the run ends with its slowest last requests.
    """
    mu = math.log(mean_s) - sigma * sigma / 2
    total = 0.0
    for seed in range(runs):
        draw = random.Random(seed)
        free_at = [0.0] * concurrency
        for _ in range(requests):
            start = heapq.heappop(free_at)
            latency = draw.lognormvariate(mu, sigma) if sigma else mean_s
            heapq.heappush(free_at, start + latency)
        total += max(free_at)
    return total / runs


def latency_bound(
    base: Path, prompts: int, sigmas: tuple[float, ...], rounds: int
) -> list[tuple[str, ...]]:
    """batchrun and the bare loop against the ideal N x 0.3 s / 100, for each latency spread.

    The ideal ignores the spread: a run ends with its slowest last requests.
    The floor row is what a client without any overhead would take, and the
    bare loop's row what a plain aiohttp script takes. Each run gets a
    gateway of its own with the same seed, so both draw the same latencies in
    the order requests arrive; medians over ``rounds``.
    """
    requests = prompts * 2
    ideal = requests * 0.3 / 100
    env = python_env(**{KEY_ENV: "sk-bench"})
    rows: list[tuple[str, ...]] = [("2. latency-bound", "wall s", "ideal s", "ratio")]
    for sigma in sigmas:
        bare: list[float] = []
        ours: list[float] = []
        for round_ in range(rounds):
            with gateway_process(cpu=SERVER_CPU, latency_ms=300, latency_sigma=sigma) as url:
                bare.append(
                    timed([sys.executable, str(HERE / "bare.py"), url, str(prompts), "2", "100"])[0]
                )
            with gateway_process(cpu=SERVER_CPU, latency_ms=300, latency_sigma=sigma) as url:
                job = write_job(
                    base / f"latency-{sigma}-{round_}", url, prompts, limits={"concurrency": 100}
                )
                ours.append(timed(batchrun(job), env)[0])
        wall, bare_wall = statistics.median(ours), statistics.median(bare)
        floor = floor_s(requests, 100, 0.3, sigma)
        spread = f"lognormal mean 300 ms, sigma {sigma:g}" if sigma else "300 ms each"
        rows.append(
            (
                f"batchrun, {requests:,} req, {spread}, c=100 (median of {rounds})",
                f"{wall:.2f}",
                f"{ideal:.2f}",
                f"{wall / ideal:.3f} x",
            )
        )
        rows.append(
            (
                "  bare loop, the same",
                f"{bare_wall:.2f}",
                f"{ideal:.2f}",
                f"{bare_wall / ideal:.3f} x",
            )
        )
        rows.append(
            (
                "  floor: no overhead at all (simulated)",
                f"{floor:.2f}",
                f"{ideal:.2f}",
                f"{floor / ideal:.3f} x",
            )
        )
    return rows


def scale(base: Path, large: int) -> list[tuple[str, ...]]:
    env = python_env(**{KEY_ENV: "sk-bench"})
    rows: list[tuple[str, ...]] = [("3. scale", "requests sent", "wall s", "peak RSS MiB")]
    peaks = {}
    with gateway_process(cpu=SERVER_CPU) as url:
        for prompts in (large // 20, large // 2):
            job = write_job(
                base / f"scale-{prompts}",
                url,
                prompts,
                limits={"concurrency": 100, "adaptive": False},
                output={
                    "path": str(base / f"scale-{prompts}" / "results.parquet"),
                    "flush_every": 5000,
                },
            )
            before = gateway_stats(url)["requests"]
            wall, _, peak, _ = timed(batchrun(job), env)
            sent = gateway_stats(url)["requests"] - before
            peaks[prompts] = peak
            rows.append(
                (f"{prompts * 2:,} requests", f"{sent:,}", f"{wall:.1f}", f"{peak / 1024:.0f}")
            )
        before = gateway_stats(url)["requests"]
        rerun_wall, _, rerun_peak, _ = timed(batchrun(job), env)
        rows.append(
            (
                "rerun of the completed largest job",
                f"{gateway_stats(url)['requests'] - before:,}",
                f"{rerun_wall:.1f}",
                f"{rerun_peak / 1024:.0f}",
            )
        )
    small, big = sorted(peaks)
    rows.append(("peak RSS ratio largest / smallest", "", "", f"{peaks[big] / peaks[small]:.2f} x"))
    return rows


def startup() -> list[tuple[str, ...]]:
    probe = (
        "import sys\n"
        "from batchrun.cli import main\n"
        "try:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\n"
        "names=('polars','aiohttp','pyarrow','pydantic','jinja2')\n"
        "heavy=[m for m in names if m in sys.modules]\n"
        "print('imported:', ','.join(heavy) or 'none', file=sys.stderr)"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=python_env()
    )
    wall = time.perf_counter() - started
    bare_started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=python_env())
    python_wall = time.perf_counter() - bare_started
    imported = done.stderr.strip().removeprefix("imported: ")
    return [
        ("4. start-up", "wall s", "heavy modules imported"),
        ("batchrun --help", f"{wall:.3f}", imported),
        ("python -c pass (for scale)", f"{python_wall:.3f}", ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--only", choices=["startup", "overhead", "latency", "scale"])
    parser.add_argument(
        "--rounds",
        type=int,
        default=7,
        help="bare/batchrun pairs in the overhead test (medians reported)",
    )
    parser.add_argument(
        "--latency-rounds",
        type=int,
        default=3,
        help="bare/batchrun pairs per latency spread (medians reported)",
    )
    args = parser.parse_args()
    print(f"cores: {CORES}; gateway on {SERVER_CPU}, client on {CLIENT_CPU}\n")
    warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        wanted = {args.only} if args.only else {"startup", "overhead", "latency", "scale"}
        if args.skip_scale:
            wanted.discard("scale")
        if "startup" in wanted:
            print(table(startup()), "\n")
        if "overhead" in wanted:
            print(table(overhead(base, 1_000 if args.quick else 10_000, args.rounds)), "\n")
        if "latency" in wanted:
            print(
                table(
                    latency_bound(
                        base, 200 if args.quick else 2_000, (0.5, 0.25, 0.0), args.latency_rounds
                    )
                ),
                "\n",
            )
        if "scale" in wanted:
            print(table(scale(base, 20_000 if args.quick else 1_000_000)))


if __name__ == "__main__":
    main()
