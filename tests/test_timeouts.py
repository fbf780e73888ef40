"""Request deadlines: a request slower than limits.timeout_s ends as a timeout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
from conftest import invoke, job_dict, write_job

from batchrun.gateway import GatewayThread


def test_slow_model_times_out_over_a_socket(
    start_gateway: Callable[..., GatewayThread], tmp_path: Path
) -> None:
    """A model slower than limits.timeout_s fails with timeout after its retries; others are ok."""
    gateway = start_gateway(model_latency_ms={"model-b": 3000})
    limits = {"concurrency": 4, "timeout_s": 0.2, "max_retries": 1, "backoff_base_s": 0.001}
    job = write_job(tmp_path / "job.yaml", job_dict(gateway.url, limits=limits))
    result = invoke("run", str(job), "--quiet")
    assert result.exit_code == 1, result.stderr
    frame = pl.read_parquet("out/results.parquet")
    slow = frame.filter(pl.col("model") == "b")
    assert slow.height == 6
    assert slow.get_column("error_type").to_list() == ["timeout"] * 6
    assert slow.get_column("attempts").to_list() == [2] * 6
    assert "limits.timeout_s" in slow.get_column("error_message")[0]
    fast = frame.filter(pl.col("model") == "model-a")
    assert fast.get_column("status").to_list() == ["ok"] * 6
