"""Object storage: inputs and outputs as s3:// URLs on a real S3-compatible server (moto)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import obstore
import polars as pl
import yaml
from conftest import KEY_ENV, TEST_KEY, invoke, job_dict, make_prompts
from services import S3Server

from batchrun.gateway import GatewayThread
from batchrun.objstore import side_key, split, store_of


def _put_prompts(bucket: str, tmp_path: Path, count: int) -> str:
    local = make_prompts(tmp_path / "source.parquet", count)
    url = f"s3://{bucket}/in/prompts.parquet"
    obstore.put(store_of(url), "in/prompts.parquet", local)
    return url


def _job(tmp_path: Path, url: str, bucket: str, count: int = 6, **limits: Any) -> Path:
    job = job_dict(
        url,
        input={"path": _put_prompts(bucket, tmp_path, count), "id_column": "id"},
        output={"path": f"s3://{bucket}/results/out.parquet", "flush_every": 5},
        limits={"concurrency": 4, "max_retries": 0, **limits},
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def _keys(bucket: str) -> list[str]:
    listed = obstore.list(store_of(f"s3://{bucket}"), prefix="").collect()
    return sorted(item["path"] for item in listed)


def test_s3_input_and_output_round_trip(
    gateway: GatewayThread, s3_bucket: str, tmp_path: Path
) -> None:
    """Prompts read from s3://, results uploaded to s3:// and nothing temporary left."""
    job = _job(tmp_path, gateway.url, s3_bucket)
    result = invoke("run", str(job))
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(f"s3://{s3_bucket}/results/out.parquet")
    assert frame.height == 12 and frame["status"].to_list() == ["ok"] * 12
    assert _keys(s3_bucket) == ["in/prompts.parquet", "results/out.parquet"]
    assert (tmp_path / ".batchrun-cache").is_dir()


def test_shards_land_as_one_dataset(gateway: GatewayThread, s3_bucket: str, tmp_path: Path) -> None:
    """Two shards upload into one folder that Polars reads as one table, each row once."""
    job = _job(tmp_path, gateway.url, s3_bucket, count=20)
    for index in range(2):
        assert invoke("run", str(job), "--shard", f"{index}/2").exit_code == 0
    table = pl.read_parquet(f"s3://{s3_bucket}/results/out/*.parquet")
    assert table.height == 40
    assert table["request_key"].n_unique() == 40


def test_ephemeral_runner_continues_from_the_upload(
    gateway: GatewayThread, s3_bucket: str, tmp_path: Path
) -> None:
    """No local copy (a new runner): the rerun fetches the upload and sends nothing again."""
    job = _job(tmp_path, gateway.url, s3_bucket)
    assert invoke("run", str(job)).exit_code == 0
    sent = gateway.gateway.stats.requests
    for path in sorted((tmp_path / ".batchrun-cache").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    result = invoke("run", str(job))
    assert result.exit_code == 0
    assert gateway.gateway.stats.requests == sent
    assert pl.read_parquet(f"s3://{s3_bucket}/results/out.parquet").height == 12


def _lock_key(bucket: str) -> str:
    return side_key(split(f"s3://{bucket}/results/out.parquet")[1], ".lock")


def test_live_lock_object_refuses_a_second_run(
    gateway: GatewayThread, s3_bucket: str, tmp_path: Path
) -> None:
    """A lock object held by a live run (this test's process) refuses the run, nothing sent."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "run_id": "r-live"}
    obstore.put(store_of(f"s3://{s3_bucket}"), _lock_key(s3_bucket), json.dumps(holder).encode())
    result = invoke("run", str(_job(tmp_path, gateway.url, s3_bucket)))
    assert result.exit_code != 0
    assert "being written by another batchrun run" in result.output and "r-live" in result.output
    assert gateway.gateway.stats.requests == 0


def test_lock_of_a_dead_run_is_taken_over(
    gateway: GatewayThread, s3_bucket: str, tmp_path: Path
) -> None:
    """A lock object left by a process of this host that is gone is taken over, with a warning."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"pid": dead.pid, "host": socket.gethostname(), "run_id": "r-dead"}
    obstore.put(store_of(f"s3://{s3_bucket}"), _lock_key(s3_bucket), json.dumps(holder).encode())
    result = invoke("run", str(_job(tmp_path, gateway.url, s3_bucket)))
    assert result.exit_code == 0, result.output
    assert "took over the lock" in result.output and "r-dead" in result.output
    assert _lock_key(s3_bucket) not in _keys(s3_bucket)


def test_redis_lock_refuses_a_second_run_when_shared(
    gateway: GatewayThread, s3_bucket: str, redis_url: str, tmp_path: Path
) -> None:
    """With limits.share the output's lock is in Redis: a held one refuses the run."""
    from batchrun.objlock import RemoteLock

    job = _job(tmp_path, gateway.url, s3_bucket, share=redis_url)
    lock = RemoteLock(f"s3://{s3_bucket}/results/out.parquet", redis_url)
    lock.acquire("r-held")
    try:
        result = invoke("run", str(job))
    finally:
        lock.release()
    assert result.exit_code != 0 and "r-held" in result.output
    assert invoke("run", str(job)).exit_code == 0


def test_kill_9_of_a_shard_then_rerun_ends_complete(
    start_gateway: Any, s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """A shard killed with -9 mid-run, then run again: every row once, in the dataset."""
    gateway = start_gateway(latency_ms=40)
    job = _job(tmp_path, gateway.url, s3_bucket, count=60)
    env = {**os.environ, KEY_ENV: TEST_KEY, "PYTHONPATH": str(Path(__file__).parents[1])}
    command = [sys.executable, "-m", "batchrun", "run", str(job), "--quiet"]
    victim = subprocess.Popen([*command, "--shard", "0/2"], env=env)
    deadline = time.monotonic() + 30
    while gateway.gateway.stats.requests < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    subprocess.run([*command, "--shard", "1/2"], env=env, check=True)
    subprocess.run([*command, "--shard", "0/2"], env=env, check=True)
    table = pl.read_parquet(f"s3://{s3_bucket}/results/out/*.parquet")
    assert table.height == 120
    assert table["request_key"].n_unique() == 120


def test_merge_joins_shard_objects_into_one_uploaded_object(
    gateway: GatewayThread, s3_bucket: str, tmp_path: Path
) -> None:
    """`merge` reads the shards' objects from the store and uploads one object, each row once;
    a plain run on a new runner then starts from it and sends nothing."""
    job = _job(tmp_path, gateway.url, s3_bucket, count=20)
    for index in range(2):
        assert invoke("run", str(job), "--shard", f"{index}/2").exit_code == 0
    result = invoke("merge", str(job))
    assert result.exit_code == 0, result.output
    target = f"s3://{s3_bucket}/results/out.parquet"
    assert f"merged 2 shard files into {target} (40 rows)" in result.stdout
    merged = pl.read_parquet(target)
    assert merged.height == 40 and merged["request_key"].n_unique() == 40
    assert not [key for key in _keys(s3_bucket) if key.endswith(".uploading")]
    for path in sorted((tmp_path / ".batchrun-cache").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    sent = gateway.gateway.stats.requests
    assert invoke("run", str(job)).exit_code == 0
    assert gateway.gateway.stats.requests == sent


def test_merge_of_shard_objects_into_a_local_file(
    gateway: GatewayThread, s3_bucket: str, tmp_path: Path
) -> None:
    """`merge -o PATH` writes the shard objects' rows to a local file."""
    job = _job(tmp_path, gateway.url, s3_bucket, count=10)
    for index in range(3):
        assert invoke("run", str(job), "--shard", f"{index}/3").exit_code == 0
    result = invoke("merge", str(job), "-o", "merged.parquet")
    assert result.exit_code == 0, result.output
    assert "merged 3 shard files" in result.stdout
    assert pl.read_parquet(tmp_path / "merged.parquet")["request_key"].n_unique() == 20
    assert f"s3://{s3_bucket}/results/out.parquet" not in [
        f"s3://{s3_bucket}/{key}" for key in _keys(s3_bucket)
    ]


def test_merge_without_shard_objects_says_so(
    gateway: GatewayThread, s3_bucket: str, tmp_path: Path
) -> None:
    """No shard has uploaded yet: one line naming what to run, exit 2."""
    result = invoke("merge", str(_job(tmp_path, gateway.url, s3_bucket)))
    assert result.exit_code == 2
    assert "no shard outputs" in result.output and "--shard 0/N" in result.output


def test_merge_finds_shard_objects_named_by_a_shard_placeholder(
    gateway: GatewayThread, s3_bucket: str, tmp_path: Path
) -> None:
    """An output.path with {shard}: the shards' objects are found and merged into `all`."""
    job = job_dict(
        gateway.url,
        input={"path": _put_prompts(s3_bucket, tmp_path, 8), "id_column": "id"},
        output={"path": f"s3://{s3_bucket}/results/{{shard}}/out.parquet"},
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    for index in range(2):
        assert invoke("run", str(path), "--shard", f"{index}/2").exit_code == 0
    result = invoke("merge", str(path))
    assert result.exit_code == 0, result.output
    merged = pl.read_parquet(f"s3://{s3_bucket}/results/all/out.parquet")
    assert merged.height == 16 and merged["request_key"].n_unique() == 16
