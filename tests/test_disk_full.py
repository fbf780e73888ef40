"""Disk full on each write path: stop within a second, exit 1, one line, everything kept readable.

Each path (journal, part, compaction, manifest) meets a disk that fills up
part way through a run: a fake that fails every write from the Nth on, or
``/dev/full``, or a real tmpfs filled up by another writer mid-run where the
machine lets us mount one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from click.testing import Result as CliResult
from conftest import invoke, job_dict, make_prompts, write_job

from batchrun import compaction, store
from batchrun.gateway import GatewayThread
from batchrun.journal import read_journal, segment_files
from batchrun.run_report import RunReport
from batchrun.store import _os_error, part_files, parts_dir

OUTPUT = Path("out/results.parquet")
PROMPTS = 100  # x 2 models
REQUESTS = 2 * PROMPTS
CONCURRENCY = 4
FULL = "No space left on device"


@dataclass
class Fill:
    """When the disk filled up, and how many requests the gateway had received by then."""

    gateway: GatewayThread
    at: float | None = None
    received: int = 0

    def now(self) -> None:
        if self.at is None:
            self.at = time.monotonic()
            self.received = self.gateway.gateway.stats.requests

    def error(self, path: object) -> OSError:
        self.now()
        return OSError(errno.ENOSPC, FULL, str(path))


def keys_on_disk(output: Path = OUTPUT) -> set[str]:
    """Every request key the output, its parts and its journal segments hold."""
    keys: set[str] = set()
    for path in ([output] if output.exists() else []) + part_files(output):
        keys.update(pl.read_parquet(path, columns=["request_key"])["request_key"])
    for segment in segment_files(parts_dir(output)):
        read = read_journal(segment)
        assert read.problem is None, f"{segment}: {read.problem}"
        keys.update(result.request_key for result in read.results)
    return keys


def slow_job(
    gw: GatewayThread, output: Path = OUTPUT, every: int = 20, seconds: float = 60.0
) -> None:
    make_prompts(Path("prompts.parquet"), PROMPTS)
    write_job(
        Path("job.yaml"),
        job_dict(
            gw.url,
            limits={"concurrency": CONCURRENCY, "backoff_base_s": 0.001},
            output={"path": str(output), "flush_every": every, "flush_seconds": seconds},
        ),
    )


def fail_journal_writes(fill: Fill, monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """Every ``os.write`` to a journal segment from the ``nth`` on fails: the disk is full."""
    real = os.write
    count = [0]

    def write(fd: int, data: bytes) -> int:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if "/journal-" in target:
            count[0] += 1
            if count[0] >= nth:
                raise fill.error(target)
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def fail_parts(fill: Fill, monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """Every part written from the ``nth`` on fails."""
    real = store.replace_atomic
    count = [0]

    def replace(write: Callable[[Path], None], path: Path) -> None:
        if path.name.startswith("part-"):
            count[0] += 1
            if count[0] >= nth:
                raise fill.error(path)
        real(write, path)

    monkeypatch.setattr(store, "replace_atomic", replace)


def fail_compaction(fill: Fill, monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """Compaction's write fails."""

    def replace(write: Callable[[Path], None], path: Path) -> None:
        raise fill.error(path)

    monkeypatch.setattr(compaction, "replace_atomic", replace)


def fail_manifest(fill: Fill, monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """The manifest's temporary file is ``/dev/full``: the real kernel error."""
    from batchrun import manifest, run

    path = manifest.manifest_path(OUTPUT)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(f".{path.name}.{os.getpid()}.tmp").symlink_to("/dev/full")
    real = manifest.write_manifest

    def write(report: RunReport) -> Path:
        fill.now()
        return real(report)

    monkeypatch.setattr(run, "write_manifest", write)


@pytest.mark.parametrize(
    ("fail", "nth", "every", "named"),
    [
        (fail_journal_writes, 30, 20, "journal-"),
        (fail_parts, 2, 20, "part-"),
        (fail_parts, 1, 5000, "part-"),  # the part the timer writes (flush_seconds)
        (fail_compaction, 1, 20, "results.parquet"),
        (fail_manifest, 1, 20, "results.parquet.manifest.json"),
    ],
    ids=["journal", "part", "timed-part", "compaction", "manifest"],
)
def test_disk_full_stops_the_run(
    start_gateway: Callable[..., GatewayThread],
    monkeypatch: pytest.MonkeyPatch,
    fail: Callable[[Fill, pytest.MonkeyPatch, int], None],
    nth: int,
    every: int,
    named: str,
) -> None:
    """Exit 1 within a second, one line naming the file, nothing new sent, all kept readable."""
    gw = start_gateway(latency_ms=20)
    slow_job(gw, every=every, seconds=0.3)
    fill = Fill(gw)
    with monkeypatch.context() as patch:
        fail(fill, patch, nth)
        result = invoke("run", "job.yaml", "--quiet")
        ended = time.monotonic()
    assert_stopped(result, fill, ended, named)
    for blocker in OUTPUT.parent.glob(".*.tmp"):
        blocker.unlink()  # make room: the manifest's /dev/full
    assert_all_kept(gw)


def assert_stopped(result: CliResult, fill: Fill, ended: float, named: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if "batchrun: error:" in line]
    assert len(errors) == 1, result.stderr
    assert FULL in errors[0] and named in errors[0]
    assert fill.at is not None and ended - fill.at < 1.0
    sent = fill.gateway.gateway.stats.requests
    assert sent <= fill.received + CONCURRENCY  # nothing new after the failure


def assert_all_kept(gw: GatewayThread) -> None:
    """Every file left reads whole, and a rerun sends exactly what they do not hold."""
    kept = keys_on_disk()
    sent = gw.gateway.stats.requests
    assert len(kept) >= sent - CONCURRENCY
    again = invoke("run", "job.yaml", "--quiet")
    assert again.exit_code == 0, again.output
    assert "could not be read whole" not in again.stderr
    assert gw.gateway.stats.requests - sent == REQUESTS - len(kept)
    frame = pl.read_parquet(OUTPUT)
    assert frame.height == REQUESTS and set(frame["status"]) == {"ok"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs, mounted for this test (root only)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the fakes above cover each write path")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_up(path: Path, leave: int = 0) -> None:
    """Write ``path`` until its file system has no more than ``leave`` bytes free."""
    with path.open("wb", buffering=0) as handle:
        for chunk in (1 << 20, 1 << 12):
            with contextlib.suppress(OSError):
                while os.statvfs(path).f_bavail * os.statvfs(path).f_frsize - chunk >= leave:
                    handle.write(b"x" * chunk)


def test_a_real_disk_fills_up_mid_run(
    start_gateway: Callable[..., GatewayThread], small_disk: Path
) -> None:
    """A real tmpfs filled by another writer mid-run: batchrun stops as with the fakes."""
    gw = start_gateway(latency_ms=20)
    output = small_disk / "results.parquet"
    slow_job(gw, output)
    fill_up(small_disk / "before", leave=51 << 20)  # batchrun asks for 50 MB free to start
    fill = Fill(gw)

    def filler() -> None:
        while gw.gateway.stats.requests < 40:
            time.sleep(0.005)
        fill_up(small_disk / "during")
        fill.now()

    thread = threading.Thread(target=filler)
    thread.start()
    result = invoke("run", "job.yaml", "--quiet")
    ended = time.monotonic()
    thread.join()
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if "batchrun: error:" in line]
    assert len(errors) == 1 and FULL in errors[0] and "results.parquet" in errors[0], result.stderr
    assert fill.at is not None and ended - fill.at < 1.0
    # batchrun's last page of journal may take a few more records after the filler's last
    # write: it stops at its own first failed write, with nothing sent but what is kept
    # and what was in flight then.
    kept = keys_on_disk(output)
    sent = gw.gateway.stats.requests
    assert sent <= len(kept) + CONCURRENCY
    (small_disk / "before").unlink()
    (small_disk / "during").unlink()
    again = invoke("run", "job.yaml", "--quiet")
    assert again.exit_code == 0, again.output
    assert "could not be read whole" not in again.stderr
    assert gw.gateway.stats.requests - sent == REQUESTS - len(kept)
    assert pl.read_parquet(output).height == REQUESTS


def test_a_write_error_without_its_number_on_a_full_disk_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Polars hides ENOSPC when the footer fails ("Invalid thrift"); a full folder names it."""
    hidden = pl.exceptions.ComputeError("parquet: Invalid thrift: transport error")
    Path("out").mkdir()
    room = os.statvfs("out")
    assert _os_error(hidden, Path("out/x.parquet")).errno == errno.EIO  # there is room here
    full = os.statvfs_result((*room[:4], 0, *room[5:]))  # f_bavail: 0
    monkeypatch.setattr(os, "statvfs", lambda _: full)
    error = _os_error(hidden, Path("out/x.parquet"))
    assert (error.errno, error.strerror, error.filename) == (errno.ENOSPC, FULL, "out/x.parquet")
