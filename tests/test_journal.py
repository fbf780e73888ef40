"""The journal: results on disk as they arrive, torn and damaged records, fsync policy."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest

from batchrun.journal import part_of, read_journal, segment_files
from batchrun.sink import ResultSink
from batchrun.store import Result, parts_dir


def result(index: int, status: str = "ok") -> Result:
    now = time.time()
    return Result(
        prompt_id=f"p{index}",
        model="m",
        model_id="m",
        sample=0,
        request_key=f"k{index}",
        status=status,
        attempts=1,
        started_at=now - 0.25,
        finished_at=now,
        response=f"answer {index} \u00e9\u4e2d \U0001f600" if status == "ok" else None,
        latency_s=0.123456789,
        embedding=[0.5, -1.25] if index % 2 else None,
        error_type=None if status == "ok" else "server_error",
    )


def record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count fsyncs instead of making them: "file" or "folder" each."""
    synced: list[str] = []

    def fsync(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def only_segment(output: Path) -> Path:
    (segment,) = segment_files(parts_dir(output))
    return segment


def test_each_result_is_in_the_journal_as_it_arrives(tmp_path: Path) -> None:
    """Every added result is handed to the OS before ``add`` returns, exactly as given."""
    output = tmp_path / "r.parquet"
    results = ResultSink(output, "run-a", "job")
    given = [result(i, "ok" if i % 3 else "error") for i in range(5)]
    for item in given:
        results.add(item)
    read = read_journal(only_segment(output))
    assert read.problem is None
    assert (read.run_id, read.job) == ("run-a", "job")
    assert read.results == given


def test_a_part_replaces_its_segment(tmp_path: Path) -> None:
    """Once the buffer is written as a part, the journal segment it came from is gone."""
    output = tmp_path / "r.parquet"
    results = ResultSink(output, "run-a", "job", flush_every=3)
    for index in range(4):
        results.add(result(index))
    segment = only_segment(output)
    assert segment.name == "journal-run-a-000002.jsonl"
    assert part_of(segment.with_name("journal-run-a-000001.jsonl")).exists()
    assert [r.request_key for r in read_journal(segment).results] == ["k3"]


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    """A segment cut inside its last record reads every record before it, and says so."""
    output = tmp_path / "r.parquet"
    results = ResultSink(output, "run-a", "job")
    for index in range(4):
        results.add(result(index))
    segment = only_segment(output)
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 7])
    read = read_journal(segment)
    assert [r.request_key for r in read.results] == ["k0", "k1", "k2"]
    assert read.problem == "a torn last record"


def test_a_damaged_record_costs_only_itself(tmp_path: Path) -> None:
    """A record whose checksum fails is dropped; the complete records after it are kept."""
    output = tmp_path / "r.parquet"
    results = ResultSink(output, "run-a", "job")
    for index in range(4):
        results.add(result(index))
    segment = only_segment(output)
    lines = segment.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"k1", b"kX")  # the header is line 0
    segment.write_bytes(b"\n".join(lines))
    read = read_journal(segment)
    assert [r.request_key for r in read.results] == ["k0", "k2", "k3"]
    assert read.problem == "1 damaged record"


def test_a_failed_write_leaves_no_torn_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full in the middle of a write: the segment is cut back to whole records."""
    output = tmp_path / "r.parquet"
    results = ResultSink(output, "run-a", "job")
    results.add(result(0))
    real = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 8:
            return real(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space left on device") as caught:
        results.add(result(1))
    segment = only_segment(output)
    assert caught.value.filename == str(segment)
    read = read_journal(segment)
    assert read.problem is None
    assert [r.request_key for r in read.results] == ["k0"]
    assert results.failed


@pytest.mark.parametrize(("fsync_seconds", "expected"), [(0.0, 5), (3600.0, 0)])
def test_fsync_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync_seconds: float, expected: int
) -> None:
    """fsync_seconds 0 fsyncs every journal write; otherwise at most once per interval."""
    synced = record_fsyncs(monkeypatch)
    results = ResultSink(tmp_path / "r.parquet", "run-a", "job", fsync_seconds=fsync_seconds)
    for index in range(5):
        results.add(result(index))
        results.tick()
    assert synced.count("file") == expected


def test_tick_fsyncs_once_the_interval_has_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick within fsync_seconds of the last fsync does not sync; one after it does.

    The first sync of a segment also syncs its folder, so its name survives too.
    """
    synced = record_fsyncs(monkeypatch)
    results = ResultSink(tmp_path / "r.parquet", "run-a", "job", fsync_seconds=0.2)
    results.add(result(0))
    results.tick()
    assert synced == []
    time.sleep(0.25)
    results.tick()
    assert synced == ["file", "folder"]
    results.add(result(1))
    time.sleep(0.25)
    results.tick()
    results.tick()
    assert synced == ["file", "folder", "file"]  # the folder once; nothing new for the last


def test_a_string_orjson_refuses_still_round_trips(tmp_path: Path) -> None:
    """A lone surrogate in a response (orjson refuses it) is journaled by the standard encoder."""
    output = tmp_path / "r.parquet"
    results = ResultSink(output, "run-a", "job")
    given = [result(0)._replace(response="half a pair: \ud800"), result(1)]
    for item in given:
        results.add(item)
    assert read_journal(only_segment(output)).results == given
