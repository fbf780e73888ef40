"""Shards on one key, results in object storage: prints the figures of issue 21.

    python benchmarks/shards.py [--prompts 600] [--rpm 600]

Every scenario runs two `batchrun run --shard I/2` processes at once against
one built-in gateway in another process, which enforces ``--rpm`` requests a
minute for the model over a sliding 5 s window. Redis (``redis-server``) and
an S3-compatible store (moto's server) run on 127.0.0.1.

1. shared: ``limits.share`` set: the rate both reach together and the 429s.
2. alone: the same without ``share``: the 429s the gateway answered.
3. s3: ``output.path: s3://...``: the rows of the dataset both shards upload.
4. kill -9: shard 0 killed mid-run, then run again: rows, and rows twice.
5. redis outage: Redis stopped for 5 s mid-run: 429s, the wait each reported,
   and whether both shards finished.

Peak memory at 100,000 and 1,000,000 requests is section 3 of
``python benchmarks/run.py --only scale``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from common import KEY_ENV, gateway_process, gateway_stats, table

WINDOW_S = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


class Redis:
    """A redis-server without persistence that can be stopped and started again."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def s3_env() -> tuple[Any, dict[str, str]]:
    """moto's S3 server on 127.0.0.1, and the environment that reaches it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_port(port)
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    return server, env


def write_job(folder: Path, url: str, prompts: int, rpm: int, **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "prompts.parquet"
    pl.DataFrame(
        {"id": [f"q{i:05d}" for i in range(prompts)],
         "question": [f"What is {i} + {i % 7}?" for i in range(prompts)]}
    ).write_parquet(data)  # fmt: skip
    limits: dict[str, Any] = {"concurrency": 16, "adaptive": False, **extra.pop("limits", {})}
    job = {
        "name": "shards",
        "provider": {"base_url": url, "api_key_env": KEY_ENV},
        "input": {"path": str(data), "id_column": "id"},
        "prompt": {"user": "{{ question }}"},
        "models": [{"id": "model-a", "rpm": rpm}],
        "params": {"max_tokens": 16},
        "limits": limits,
        "output": {"path": str(folder / "results.parquet"), "flush_every": 50,
                   "flush_seconds": 1},
        **extra,
    }  # fmt: skip
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def start_shard(job: Path, index: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun", "run", str(job), "--json", "--quiet",
         "--shard", f"{index}/2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def summary(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=900)
    try:
        return dict(json.loads(out))
    except ValueError:
        return {"exit_code": process.returncode, "error": err.strip().splitlines()[-1:]}


def accepted_rate(frames: list[pl.DataFrame]) -> float:
    """Requests a minute both shards got answered, first answer to last."""
    both = pl.concat(frames).filter(pl.col("status") == "ok")
    times = both.get_column("finished_at").sort()
    span = (times[-1] - times[0]).total_seconds()
    return (both.height - 1) / span * 60 if span > 0 else 0.0


def two_shards(job: Path, env: dict[str, str], during: Any = None) -> list[dict[str, Any]]:
    shards = [start_shard(job, i, env) for i in range(2)]
    if during is not None:
        during()
    return [summary(p) for p in shards]


def shared_rows(base: Path, args: argparse.Namespace, env: dict[str, str]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    redis = Redis()
    redis.start()
    gateway = {"model_rpm": {"model-a": args.rpm}, "rate_limit_window_s": WINDOW_S}
    try:
        for name, share in (("1. shared (limits.share)", redis.url), ("2. alone (no share)", None)):
            with gateway_process(**gateway) as url:
                limits = {"share": share} if share else {}
                job = write_job(base / name[:1], url, args.prompts, args.rpm, limits=limits)
                results = two_shards(job, env)
                frames = [pl.read_parquet(s["output"]) for s in results if "output" in s]
                rate = accepted_rate(frames)
                refused = gateway_stats(url)["by_status"].get("429", 0)
                rows.append((name, f"{sum(f.height for f in frames)}", f"{rate:.0f}",
                             f"{rate / args.rpm:.1%}", f"{refused}", "-"))  # fmt: skip
        with gateway_process(**gateway) as url:
            job = write_job(base / "5", url, args.prompts, args.rpm, limits={"share": redis.url})

            def outage() -> None:
                time.sleep(args.outage_after)
                redis.stop()
                time.sleep(5.0)
                redis.start()

            results = two_shards(job, env, during=outage)
            frames = [pl.read_parquet(s["output"]) for s in results if "output" in s]
            refused = gateway_stats(url)["by_status"].get("429", 0)
            waits = "/".join(f"{s.get('share_wait_s')}" for s in results)
            rows.append(("5. redis stopped 5 s mid-run", f"{sum(f.height for f in frames)}",
                         "", "", f"{refused}", f"waited {waits} s"))  # fmt: skip
    finally:
        redis.stop()
    return rows


def s3_rows(base: Path, args: argparse.Namespace, env: dict[str, str]) -> list[tuple[str, ...]]:
    import boto3

    server, s3 = s3_env()
    env = {**env, **s3}
    os.environ.update(s3)
    boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"], region_name="us-east-1").create_bucket(
        Bucket="bench-results"
    )
    rows: list[tuple[str, ...]] = []
    gateway = {"model_rpm": {"model-a": args.rpm}, "rate_limit_window_s": WINDOW_S}
    try:
        with gateway_process(**gateway) as url:
            output = {"path": "s3://bench-results/run3/results.parquet", "flush_every": 50,
                      "flush_seconds": 1}  # fmt: skip
            job = write_job(base / "3", url, args.prompts, args.rpm, output=output)
            two_shards(job, env)
            table3 = pl.read_parquet("s3://bench-results/run3/results/*.parquet")
            rows.append(("3. s3 output, two shards", f"{table3.height}", "", "", "",
                         f"{table3.height - table3['request_key'].n_unique()} twice"))  # fmt: skip
        with gateway_process(**gateway) as url:
            output = {"path": "s3://bench-results/run4/results.parquet", "flush_every": 20,
                      "flush_seconds": 1}  # fmt: skip
            job = write_job(base / "4", url, args.prompts, args.rpm, output=output)
            victim, other = start_shard(job, 0, env), start_shard(job, 1, env)
            time.sleep(args.outage_after)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            summary(other)
            summary(start_shard(job, 0, env))
            table4 = pl.read_parquet("s3://bench-results/run4/results/*.parquet")
            rows.append(("4. kill -9 of shard 0, rerun", f"{table4.height}", "", "", "",
                         f"{table4.height - table4['request_key'].n_unique()} twice"))  # fmt: skip
    finally:
        server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=600)
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--outage-after", type=float, default=15.0)
    args = parser.parse_args()
    env = {**os.environ, KEY_ENV: "sk-bench", "PYTHONPATH": str(Path(__file__).parents[1])}
    header = ("scenario", "rows", "rpm reached", "of limit", "429s", "notes")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [header, *shared_rows(Path(tmp), args, env), *s3_rows(Path(tmp), args, env)]
    print(f"{args.prompts} prompts, 2 shards, rpm {args.rpm} declared and enforced "
          f"over {WINDOW_S:g} s windows")  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
