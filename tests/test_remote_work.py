"""The one record of remote work (batches and video tasks) and its polling loop: the record's
old shapes still collected, both kinds in one file, over the built-in gateway where it counts."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import invoke, job_dict, make_prompts, spawn_run, write_job

from batchrun.gateway import GatewayThread
from batchrun.gateway.settings import BatchSettings
from batchrun.remote_poll import Backoff, poll_until
from batchrun.remote_work import (
    TASK_KINDS,
    RemoteJob,
    RemoteRecord,
    legacy_tasks_path,
    record_path,
)

OUTPUT = Path("out/results.parquet")
Start = Callable[..., GatewayThread]


def old_batch_work(remote_id: str, keys: list[str]) -> dict[str, Any]:
    """A batch as version 1 of the record wrote it (``PendingWork`` of ``batch/pending.py``)."""
    return {
        "submission": f"sub-{remote_id}",
        "kind": "openai-batch",
        "model": "model-a",
        "keys": keys,
        "prepared_at": 1700000000.0,
        "remote_id": remote_id,
        "submitted_at": 1700000001.0,
        "status": "submitted",
        "counts": {"total": len(keys)},
        "detail": {},
    }


def test_a_version_1_batch_record_is_read_and_written_back_as_version_2(tmp_path: Path) -> None:
    """The batch lane's old file (``works``, version 1) reads as the same jobs; the next write
    is version 2 (``jobs``) and loses nothing."""
    output = tmp_path / "r.parquet"
    old = {"version": 1, "works": [old_batch_work("batch_1", ["a", "b"])]}
    record_path(output).write_text(json.dumps(old))
    record = RemoteRecord(output)
    assert [job.remote_id for job in record.jobs] == ["batch_1"]
    assert record.keys({"openai-batch"}) == {"a", "b"}
    record.save()
    written = json.loads(record_path(output).read_text())
    assert written["version"] == 2 and written["jobs"] == old["works"]


def old_task_entries() -> dict[str, Any]:
    """Video tasks as ``batchrun/pending.py`` recorded them: by request key, under entries."""
    return {
        "entries": {
            "k1": {"task_id": "video_1", "api": "videos", "model": "sora-2", "at": 1700000000.0},
            "k2": {
                "task_id": "task_2",
                "api": "video",
                "model": "veo-3",
                "at": 1700000002.0,
                "artifact": "r.files/abc.mp4",
                "type": "video/mp4",
                "seconds": 4.0,
            },
        }
    }


def test_old_video_task_file_is_adopted_and_removed_at_the_first_write(tmp_path: Path) -> None:
    """NAME.pending.json of the old video tasks: each entry becomes a one-key task job (its
    file, type and seconds kept); reading writes nothing; the first write moves them into
    the one record and removes the old file."""
    output = tmp_path / "r.parquet"
    legacy = legacy_tasks_path(output)
    legacy.write_text(json.dumps(old_task_entries()))
    record = RemoteRecord(output)
    first, second = record.find("k1", TASK_KINDS), record.find("k2", TASK_KINDS)
    assert first is not None and second is not None
    assert (first.kind, first.remote_id, first.model) == ("videos-task", "video_1", "sora-2")
    assert (second.kind, second.remote_id, second.status) == ("video-task", "task_2", "submitted")
    assert second.detail == {"artifact": "r.files/abc.mp4", "type": "video/mp4", "seconds": 4.0}
    assert legacy.exists() and not record_path(output).exists()
    record.remove(first)
    assert not legacy.exists()
    again = RemoteRecord(output)
    assert [(job.kind, job.keys) for job in again.jobs] == [("video-task", ["k2"])]


def test_an_old_task_already_moved_is_not_adopted_twice(tmp_path: Path) -> None:
    """Killed between writing the new record and removing the old file: the task is held once."""
    output = tmp_path / "r.parquet"
    RemoteRecord(output).submitted(RemoteJob.new("videos-task", "sora-2", ["k1"]), "video_1")
    legacy_tasks_path(output).write_text(json.dumps(old_task_entries()))
    record = RemoteRecord(output)
    assert sorted(key for job in record.jobs for key in job.keys) == ["k1", "k2"]


@pytest.mark.parametrize(
    ("where", "text", "says"),
    [
        ("record", "{not json", "cannot read the pending work"),
        ("legacy", "{not json", "cannot read the pending work"),
        ("record", '{"version": 9, "jobs": []}', "version 9"),
    ],
)
def test_a_record_that_cannot_be_read_is_an_os_error(
    tmp_path: Path, where: str, text: str, says: str
) -> None:
    """A damaged record (new or old file) or one of a newer batchrun is never taken for
    "nothing pending", which would submit everything again."""
    output = tmp_path / "r.parquet"
    path = record_path(output) if where == "record" else legacy_tasks_path(output)
    path.write_text(text)
    with pytest.raises(OSError, match=says):
        RemoteRecord(output)


def test_batches_and_tasks_share_one_record_and_settle_by_kind(tmp_path: Path) -> None:
    """A batch and a task in one record: both on disk after each write; settling the tasks
    whose rows are written leaves the batch (it goes only when the lane collects it)."""
    output = tmp_path / "r.parquet"
    record = RemoteRecord(output)
    batch = RemoteJob.new("openai-batch", "model-a", ["a", "b"])
    record.add(batch)
    record.submitted(RemoteJob.new("video-task", "veo-3", ["v"]), "task_1")
    record.submitted(batch, "batch_1")
    kinds = {
        job["kind"]: job["remote_id"] for job in json.loads(record_path(output).read_text())["jobs"]
    }
    assert kinds == {"openai-batch": "batch_1", "video-task": "task_1"}
    assert record.settle({"a", "b", "v"}, TASK_KINDS) == 1
    assert [job.kind for job in RemoteRecord(output).jobs] == ["openai-batch"]


def test_poll_until_waits_with_growing_capped_delays_and_gives_up_at_the_timeout() -> None:
    """Delays start at first_s, grow by growth, stop at most_s; the first value ends it; with
    a timeout that has passed it gives None after one poll."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    answers = iter([None, None, None, None, "done"])

    async def poll() -> str | None:
        return next(answers)

    backoff = Backoff(first_s=0.25, most_s=1.0, growth=2.0)
    assert asyncio.run(poll_until(poll, backoff, sleep=sleep, wait_first=True)) == "done"
    assert slept == [0.25, 0.5, 1.0, 1.0, 1.0]

    async def never() -> str | None:
        return None

    slept.clear()
    assert asyncio.run(poll_until(never, backoff, sleep=sleep, timeout_s=0.0)) is None
    assert slept == []


def recorded() -> list[dict[str, Any]]:
    try:
        return list(json.loads(record_path(OUTPUT).read_text())["jobs"])
    except (FileNotFoundError, ValueError):
        return []


def video_submissions(gw: GatewayThread) -> int:
    return sum(gw.gateway.stats.by_path[p] for p in ("/v1/video/generations", "/v1/videos"))


def test_batches_and_video_tasks_pending_together_are_collected_without_resubmitting(
    start_gateway: Start,
) -> None:
    """One job with a batch-mode model and two video models, SIGTERM while the tasks run: the
    one record holds both batches and tasks (neither lifecycle's writes drop the other's);
    the next run collects all of them and submits nothing again."""
    gw = start_gateway(batches=BatchSettings(delay_s=1), video_ms=600_000)
    make_prompts(Path("prompts.parquet"), 2)  # 4 tasks, all in flight at concurrency 4
    models: list[Any] = [
        {"id": "model-a", "mode": "batch"},
        {"id": "veo-3", "api": "video", "params": {"duration": 4}},
        {"id": "sora-2", "api": "videos", "params": {"seconds": "4"}},
    ]
    write_job(Path("job.yaml"), job_dict(gw.url, models=models, params={}))
    process = spawn_run("job.yaml", "--quiet", "--grace", "0.5")
    try:
        deadline = time.monotonic() + 30
        while sum(job["kind"].endswith("-task") for job in recorded()) < 4:
            assert time.monotonic() < deadline, "the tasks were not recorded"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == 143, err
    kinds = sorted(job["kind"] for job in recorded())
    assert kinds == ["openai-batch"] + ["video-task"] * 2 + ["videos-task"] * 2
    store = gw.gateway._batches
    assert store is not None and len(store.store.batches) == 1 and video_submissions(gw) == 4

    gw.gateway.settings.video_ms = 0  # the tasks are done now, and the batch within 1 s
    again = invoke("run", "job.yaml", "--wait")
    assert again.exit_code == 0, again.output
    assert len(store.store.batches) == 1 and video_submissions(gw) == 4
    frame = pl.read_parquet(OUTPUT)
    assert frame.height == 6 and set(frame["status"]) == {"ok"}
    assert not record_path(OUTPUT).exists()


def test_batches_recorded_by_the_version_1_record_are_collected_without_resubmitting(
    start_gateway: Start,
) -> None:
    """Batches pending in a version-1 record (``works``, as the old batch lane wrote it): the
    next run collects them and creates no batch."""
    gw = start_gateway(batches=BatchSettings(delay_s=1))
    write_job(
        Path("job.yaml"),
        job_dict(gw.url, mode="batch", models=["model-a", {"id": "model-b", "alias": "b"}]),
    )
    assert invoke("run", "job.yaml").exit_code == 0
    works = recorded()
    assert len(works) == 2
    record_path(OUTPUT).write_text(json.dumps({"version": 1, "works": works}))
    store = gw.gateway._batches
    assert store is not None
    again = invoke("run", "job.yaml", "--wait")
    assert again.exit_code == 0, again.output
    assert len(store.store.batches) == 2  # nothing submitted twice
    frame = pl.read_parquet(OUTPUT)
    assert frame.height == 12 and set(frame["status"]) == {"ok"}
    assert not record_path(OUTPUT).exists()


@pytest.mark.parametrize("command", ["run", "status", "cancel"])
def test_a_damaged_record_is_one_line_naming_it_and_nothing_is_sent(
    start_gateway: Start, command: str
) -> None:
    """A record that does not read (a batch-mode job's): exit 2, one line naming the file and
    what to do, no traceback, not one request (a batch lane once died with a traceback)."""
    gw = start_gateway(batches=BatchSettings())
    write_job(Path("job.yaml"), job_dict(gw.url, mode="batch", models=["model-a"]))
    OUTPUT.parent.mkdir()
    record_path(OUTPUT).write_text('{"version": 2, "jobs": [')
    result = invoke(command, "job.yaml")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert (
        "output.path: cannot read the pending work in out/.results.parquet.pending.json"
        in lines[-1]
    )
    assert "move it aside" in lines[-1]
    assert gw.gateway.stats.all_requests == 0
