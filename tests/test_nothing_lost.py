"""Nothing lost: parts, kill -9 and resume, signals, the lock, --fresh, shards, disk faults."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from conftest import TEST_KEY, invoke, job_dict, make_prompts, spawn_run, write_job

from batchrun.gateway import GatewayThread
from batchrun.journal import read_journal, segment_files
from batchrun.lock import RunLock, lock_path
from batchrun.store import part_files, parts_dir

OUTPUT = Path("out/results.parquet")


def rows_on_disk() -> int:
    total = pl.read_parquet(OUTPUT).height if OUTPUT.exists() else 0
    return total + sum(pl.read_parquet(p).height for p in part_files(OUTPUT))


def wait_for_rows(minimum: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while rows_on_disk() < minimum:
        assert time.monotonic() < deadline, "no parts were written"
        time.sleep(0.05)


def slow_job(gw: GatewayThread, rows: int, **limits: object) -> None:
    make_prompts(Path("prompts.parquet"), rows)
    write_job(
        Path("job.yaml"),
        job_dict(
            gw.url,
            limits={"concurrency": 8, "backoff_base_s": 0.001, **limits},
            output={"path": str(OUTPUT), "flush_every": 20, "flush_seconds": 0.3},
        ),
    )


def test_kill_9_then_resume_loses_nothing(start_gateway: Callable[..., GatewayThread]) -> None:
    """Killed with SIGKILL twice mid-run, a final rerun completes every request exactly once."""
    gw = start_gateway(latency_ms=20)
    slow_job(gw, 200)  # 400 requests
    flush_window = 20 + 8 * 2  # one flush_every plus what may be in flight for both models
    for kill in range(2):
        process = spawn_run("job.yaml", "--quiet")
        wait_for_rows(60 * (kill + 1))
        process.kill()
        process.communicate()
        for part in part_files(OUTPUT):
            pl.read_parquet(part)  # every part on disk is whole
    final = invoke("run", "job.yaml", "--quiet")
    assert final.exit_code == 0, final.output
    frame = pl.read_parquet(OUTPUT)
    assert frame.height == 400
    assert frame["request_key"].n_unique() == 400
    assert set(frame["status"]) == {"ok"}
    assert gw.gateway.stats.requests <= 400 + 2 * flush_window
    assert not part_files(OUTPUT)
    sent = gw.gateway.stats.requests
    assert invoke("run", "job.yaml").exit_code == 0
    assert gw.gateway.stats.requests == sent  # a completed job sends nothing


def keys_on_disk() -> set[str]:
    """Every request key the output, its parts and its journal segments hold."""
    keys: set[str] = set()
    for path in ([OUTPUT] if OUTPUT.exists() else []) + part_files(OUTPUT):
        keys.update(pl.read_parquet(path, columns=["request_key"])["request_key"])
    for segment in segment_files(parts_dir(OUTPUT)):
        keys.update(result.request_key for result in read_journal(segment).results)
    return keys


def test_kill_9_at_random_points_loses_no_answer(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """SIGKILL at three random points, one in a run's first second: no answered request is lost.

    Parts are written only every 5,000 results, so what survives is the
    journal's. After each kill, the requests the gateway received but the
    files do not hold are at most those in flight (the concurrency) per kill.
    """
    gw = start_gateway(latency_ms=60)
    concurrency = 8
    make_prompts(Path("prompts.parquet"), 400)  # 800 requests, about 6 s of sending
    write_job(
        Path("job.yaml"),
        job_dict(
            gw.url,
            limits={"concurrency": concurrency, "backoff_base_s": 0.001},
            output={"path": str(OUTPUT), "flush_every": 5000, "flush_seconds": 60},
        ),
    )
    draw = random.Random(14)
    for kill in range(1, 4):
        before = gw.gateway.stats.requests
        process = spawn_run("job.yaml", "--quiet")
        deadline = time.monotonic() + 20
        while gw.gateway.stats.requests == before:  # this run has started sending
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.005)
        time.sleep(draw.uniform(0.0, 0.9) if kill == 1 else draw.uniform(0.2, 1.5))
        process.kill()
        process.communicate()
        time.sleep(0.1)  # requests already on the wire reach the gateway
        received = gw.gateway.stats.requests
        kept = keys_on_disk()
        assert received - len(kept) <= kill * concurrency, (kill, received, len(kept))
    final = invoke("run", "job.yaml", "--quiet")
    assert final.exit_code == 0, final.output
    frame = pl.read_parquet(OUTPUT)
    assert frame.height == 800 and frame["request_key"].n_unique() == 800
    assert set(frame["status"]) == {"ok"}
    assert gw.gateway.stats.requests - 800 <= 3 * concurrency
    assert not segment_files(parts_dir(OUTPUT)) and not part_files(OUTPUT)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_gracefully(
    start_gateway: Callable[..., GatewayThread], signum: int, code: int
) -> None:
    """SIGINT / SIGTERM: stop sending, finish in flight, compact, exit 130 / 143."""
    gw = start_gateway(latency_ms=30)
    slow_job(gw, 300)
    process = spawn_run("job.yaml", "--quiet", "--grace", "5")
    wait_for_rows(40)
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == code, err
    assert "interrupted; finished results are saved" in err
    assert "Traceback" not in err
    frame = pl.read_parquet(OUTPUT)  # compacted and whole
    assert 40 <= frame.height < 600
    assert set(frame["status"]) == {"ok"}  # in-flight requests finished, none cut
    assert not part_files(OUTPUT)
    assert gw.gateway.stats.requests == frame.height
    manifest = json.loads(Path(str(OUTPUT) + ".manifest.json").read_text())
    assert manifest["latest"]["exit_code"] == code
    resumed = invoke("run", "job.yaml", "--quiet")
    assert resumed.exit_code == 0
    assert pl.read_parquet(OUTPUT).height == 600


def test_second_signal_stops_at_once(start_gateway: Callable[..., GatewayThread]) -> None:
    """A second Ctrl-C does not wait for slow requests, and the files stay valid."""
    gw = start_gateway(latency_ms=3000)
    slow_job(gw, 50)
    process = spawn_run("job.yaml", "--quiet", "--grace", "60")
    deadline = time.monotonic() + 10
    while gw.gateway.stats.requests < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 5
    assert process.returncode == 130, err
    assert pl.read_parquet(OUTPUT).height <= 2  # only the probes had finished; the file is valid


def test_lock_refuses_a_second_run(gateway: GatewayThread) -> None:
    """While another run holds the output, a second run refuses with exit 2 and sends nothing."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    held = RunLock(OUTPUT)
    held.acquire("other-run")
    try:
        result = invoke("run", "job.yaml")
    finally:
        held.release()
    assert result.exit_code == 2
    assert "is being written by another batchrun run" in result.output
    assert "other-run" in result.output
    assert gateway.gateway.stats.all_requests == 0


def test_stale_lock_is_taken_over(gateway: GatewayThread) -> None:
    """A lock file left by a dead run is taken over with a warning."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    lock_path(OUTPUT).write_text(
        json.dumps(
            {"pid": 999999, "host": "gone", "run_id": "dead-run", "started": "2026-01-01T00:00:00Z"}
        )
    )
    result = invoke("run", "job.yaml")
    assert result.exit_code == 0
    assert "took over a lock left by a run that is gone" in result.output
    assert "dead-run" in result.output
    assert not lock_path(OUTPUT).exists()


def test_fresh_keeps_the_old_results(gateway: GatewayThread) -> None:
    """--fresh starts over and keeps the earlier file under another name."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    assert invoke("run", "job.yaml").exit_code == 0
    result = invoke("run", "job.yaml", "--fresh")
    assert result.exit_code == 0
    kept = list(OUTPUT.parent.glob("results.before-*.parquet"))
    assert len(kept) == 1 and pl.read_parquet(kept[0]).height == 12
    assert gateway.gateway.stats.requests == 24
    assert pl.read_parquet(OUTPUT).height == 12


def test_shards_concatenate_to_one_run(gateway: GatewayThread) -> None:
    """Three shards, concatenated, hold exactly the requests of one whole run."""
    make_prompts(Path("prompts.parquet"), 15)
    write_job(Path("job.yaml"), job_dict(gateway.url))
    for index in range(3):
        assert invoke("run", "job.yaml", "--shard", f"{index}/3").exit_code == 0
    shards = sorted(OUTPUT.parent.glob("results.shard-*-of-3.parquet"))
    assert len(shards) == 3
    combined = pl.concat([pl.read_parquet(p) for p in shards])
    assert gateway.gateway.stats.requests == 30
    write_job(Path("whole.yaml"), job_dict(gateway.url, output={"path": "whole/results.parquet"}))
    assert invoke("run", "whole.yaml").exit_code == 0
    whole = pl.read_parquet("whole/results.parquet")
    assert sorted(combined["request_key"]) == sorted(whole["request_key"])
    columns = ["request_key", "prompt_id", "model", "response", "prompt_tokens"]
    assert (
        combined.select(columns)
        .sort("request_key")
        .equals(whole.select(columns).sort("request_key"))
    )


def test_full_disk_stops_cleanly(gateway: GatewayThread, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails (disk full) stops the run; parts already written stay readable."""
    from batchrun import compaction, store

    make_prompts(Path("prompts.parquet"), 40)
    write_job(
        Path("job.yaml"),
        job_dict(gateway.url, output={"path": str(OUTPUT), "flush_every": 10, "flush_seconds": 60}),
    )
    real = store.replace_atomic
    calls = [0]

    def failing(write: Callable[[Path], None], path: Path) -> None:
        calls[0] += 1
        if calls[0] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(write, path)

    monkeypatch.setattr(store, "replace_atomic", failing)
    monkeypatch.setattr(compaction, "replace_atomic", failing)
    result = invoke("run", "job.yaml")
    assert result.exit_code == 1
    assert "No space left on device" in result.output
    assert "Traceback" not in result.output
    parts = part_files(OUTPUT)
    assert len(parts) == 2 and sum(pl.read_parquet(p).height for p in parts) == 20
    assert gateway.gateway.stats.requests < 80
    monkeypatch.setattr(store, "replace_atomic", real)
    monkeypatch.setattr(compaction, "replace_atomic", real)
    again = invoke("run", "job.yaml")
    assert again.exit_code == 0
    assert pl.read_parquet(OUTPUT).height == 80


def test_failed_compaction_write_is_one_line(gateway: GatewayThread) -> None:
    """Polars' own write failure (not a stand-in) ends in one line, exit 1, parts kept.

    Compaction's temporary file is a link to /dev/full, so Polars' writer
    meets a real "no space left on device".
    """
    make_prompts(Path("prompts.parquet"), 10)
    write_job(Path("job.yaml"), job_dict(gateway.url, output={"path": str(OUTPUT)}))
    blocker = OUTPUT.with_name(f".{OUTPUT.name}.{os.getpid()}.tmp")
    blocker.parent.mkdir(parents=True)
    blocker.symlink_to("/dev/full")
    result = invoke("run", "job.yaml")
    assert result.exit_code == 1
    assert "cannot write results beside" in result.stderr
    assert "Traceback" not in result.output
    assert sum(pl.read_parquet(p).height for p in part_files(OUTPUT)) == 20
    assert not blocker.is_symlink()  # the failed temporary file was cleaned up
    again = invoke("run", "job.yaml")
    assert again.exit_code == 0, again.stderr
    assert gateway.gateway.stats.requests == 20
    assert pl.read_parquet(OUTPUT).height == 20


@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        ("parquet: underlying IO error: No space left on device (os error 28)", errno.ENOSPC,
         "No space left on device"),
        ("parquet: File out of specification: Invalid thrift: transport error", errno.EIO,
         "the write failed (parquet: File out of specification: Invalid thrift: transport error)"),
    ],
)  # fmt: skip
def test_polars_write_errors_become_os_errors(message: str, code: int, reason: str) -> None:
    """A failed Polars write is reported as the OSError it is, with the number when known."""
    from batchrun.store import _os_error

    error = _os_error(pl.exceptions.ComputeError(message), Path("out/x.tmp"))
    assert (error.errno, error.strerror, error.filename) == (code, reason, "out/x.tmp")


def test_manifest_and_json_summary(gateway: GatewayThread) -> None:
    """The manifest records the run; --json prints the summary on stdout; no key anywhere."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    result = invoke("run", "job.yaml", "--json", "--quiet")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["sent"] == 12 and summary["exit_code"] == 0
    assert {m["model"] for m in summary["models"]} == {"model-a", "b"}
    manifest = json.loads(Path(summary["manifest"]).read_text())["latest"]
    assert manifest["run_id"] == summary["run_id"]
    assert manifest["by_status"] == {"ok": 12}
    assert set(manifest["by_model"]) == {"model-a", "b"}
    assert len(manifest["job_sha256"]) == 64 and manifest["exit_code"] == 0
    assert TEST_KEY not in Path(summary["manifest"]).read_text()
    assert invoke("run", "job.yaml", "--json").exit_code == 0
    document = json.loads(Path(summary["manifest"]).read_text())
    assert document["history"][-1]["run_id"] == summary["run_id"]


def test_progress_lines_when_not_a_terminal(gateway: GatewayThread) -> None:
    """Without a terminal, progress is plain lines (no bar) on stderr."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    result = invoke("run", "job.yaml")
    assert "progress: 12/12 done" in result.stderr
    assert "\r" not in result.stderr


def test_output_placeholders(gateway: GatewayThread) -> None:
    """{name} and {date} fill the output path, so cron writes one file per run."""
    write_job(Path("job.yaml"), job_dict(gateway.url, output={"path": "out/{name}-{date}.parquet"}))
    assert invoke("run", "job.yaml").exit_code == 0
    written = list(Path("out").glob("test-20*.parquet"))
    assert len(written) == 1
