"""--shard auto: the slice of each scheduler's copy, from the variables the scheduler sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import invoke, job_dict, write_job

from batchrun.gateway import GatewayThread
from batchrun.shard_env import auto_shard


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"JOB_COMPLETION_INDEX": "2", "BATCHRUN_SHARD_COUNT": "3"}, (2, 3)),
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, (1, 4)),
        (
            {
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_COUNT": "4",
                "SLURM_ARRAY_TASK_MIN": "1",
            },
            (3, 4),
        ),
        ({"BATCHRUN_SHARD_INDEX": "0", "BATCHRUN_SHARD_COUNT": "2"}, (0, 2)),
    ],
    ids=["kubernetes-indexed-job", "slurm-array", "slurm-array-from-1", "matrix-or-cron"],
)
def test_auto_shard_reads_each_scheduler(env: dict[str, str], expected: tuple[int, int]) -> None:
    """Each scheduler's variables give the 0-based shard and the count."""
    assert auto_shard(env) == expected


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "JOB_COMPLETION_INDEX"),
        ({"JOB_COMPLETION_INDEX": "0"}, "BATCHRUN_SHARD_COUNT is not set"),
        ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4"}, "shard 5 of 4"),
        ({"BATCHRUN_SHARD_INDEX": "x", "BATCHRUN_SHARD_COUNT": "2"}, "not a whole number"),
    ],
    ids=["nothing-set", "k8s-without-count", "slurm-out-of-range", "not-a-number"],
)
def test_auto_shard_names_what_is_wrong(env: dict[str, str], named: str) -> None:
    """A missing or wrong variable is named in the one-line error."""
    with pytest.raises(ValueError, match=named):
        auto_shard(env)


def test_run_with_shard_auto_in_an_indexed_job(
    gateway: GatewayThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Kubernetes Indexed Job's pod 1 of 2 writes shard 1-of-2's output."""
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    monkeypatch.setenv("BATCHRUN_SHARD_COUNT", "2")
    job = write_job(tmp_path / "job.yaml", job_dict(gateway.url))
    result = invoke("run", str(job), "--shard", "auto")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "results.shard-1-of-2.parquet").exists()


def test_shard_auto_without_variables_exits_2(gateway: GatewayThread, tmp_path: Path) -> None:
    """--shard auto with no scheduler variable: exit 2, nothing sent."""
    job = write_job(tmp_path / "job.yaml", job_dict(gateway.url))
    result = invoke("run", str(job), "--shard", "auto")
    assert result.exit_code == 2
    assert "--shard auto" in result.output
    assert gateway.gateway.stats.requests == 0
