"""Damaged files heal: an output, part or journal cut short is set aside and the run goes on."""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from click.testing import Result as CliResult
from conftest import invoke, job_dict, write_job

from batchrun import compaction, store
from batchrun.gateway import GatewayThread
from batchrun.journal import read_journal, segment_files
from batchrun.store import part_files, parts_dir

OUTPUT = Path("out/results.parquet")
ROWS = 12  # the default job: 6 prompts x 2 models
# Where each file is cut: half way, and two offsets drawn once from a fixed seed.
_DRAWN = random.Random(14)
FRACTIONS = [0.5, round(_DRAWN.uniform(0.02, 0.98), 3), round(_DRAWN.uniform(0.02, 0.98), 3)]


def cut(path: Path, fraction: float) -> int:
    """Truncate ``path`` to ``fraction`` of its size; the size it now has."""
    size = int(path.stat().st_size * fraction)
    os.truncate(path, size)
    return size


def assert_healed(result: CliResult, damaged: Path, gateway: GatewayThread, sent: int) -> None:
    """The run went on: exit 0, no traceback, one warning naming what it set aside, all ok."""
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.stderr.splitlines() if "could not be read whole" in line]
    assert len(warnings) == 1, result.stderr
    assert str(damaged) in warnings[0] and f"moved it to {damaged.name}.damaged-" in warnings[0]
    assert list(damaged.parent.glob(f"{damaged.name}.damaged-*"))
    frame = pl.read_parquet(OUTPUT)
    assert frame.height == ROWS and frame["request_key"].n_unique() == ROWS
    assert set(frame["status"]) == {"ok"}
    assert gateway.gateway.stats.requests == sent


def leave_parts(gateway: GatewayThread) -> None:
    """A run whose compaction meets a full disk: its results stay as parts (5 + 5 + 2 rows)."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    blocker = OUTPUT.with_name(f".{OUTPUT.name}.{os.getpid()}.tmp")
    blocker.parent.mkdir(parents=True)
    blocker.symlink_to("/dev/full")
    assert invoke("run", "job.yaml").exit_code == 1
    assert [pl.read_parquet(p).height for p in part_files(OUTPUT)] == [5, 5, 2]


def leave_journal(gateway: GatewayThread, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run that cannot write a single Parquet file: its results stay in its journal."""
    write_job(Path("job.yaml"), job_dict(gateway.url, output={"path": str(OUTPUT)}))

    def full(write: Callable[[Path], None], path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(store, "replace_atomic", full)
        patch.setattr(compaction, "replace_atomic", full)
        assert invoke("run", "job.yaml").exit_code == 1
    (segment,) = segment_files(parts_dir(OUTPUT))
    assert len(read_journal(segment).results) == ROWS
    return segment


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_truncated_output_is_set_aside(gateway: GatewayThread, fraction: float) -> None:
    """A results file cut short: the next run sets it aside, says so, and redoes its rows."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    assert invoke("run", "job.yaml").exit_code == 0
    size = cut(OUTPUT, fraction)
    result = invoke("run", "job.yaml")
    assert_healed(result, OUTPUT, gateway, sent=2 * ROWS)
    (aside,) = OUTPUT.parent.glob("results.parquet.damaged-*")
    assert aside.stat().st_size == size  # the damaged file is kept as it was
    assert "kept the 0 rows that read" in result.stderr


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_truncated_part_is_set_aside(gateway: GatewayThread, fraction: float) -> None:
    """A part cut short: set aside, the other parts kept, only its rows sent again."""
    leave_parts(gateway)
    first = part_files(OUTPUT)[0]
    cut(first, fraction)
    result = invoke("run", "job.yaml")
    assert_healed(result, first, gateway, sent=ROWS + 5)


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_truncated_journal_keeps_its_complete_records(
    gateway: GatewayThread, monkeypatch: pytest.MonkeyPatch, fraction: float
) -> None:
    """A journal cut short: its complete records are kept; only the rest is sent again."""
    segment = leave_journal(gateway, monkeypatch)
    cut(segment, fraction)
    complete = max(segment.read_bytes().count(b"\n") - 1, 0)  # less the header line
    result = invoke("run", "job.yaml")
    assert_healed(result, segment, gateway, sent=2 * ROWS - complete)
    assert f"kept the {complete:,} complete records" in result.stderr


def test_a_whole_journal_left_by_a_dead_run_is_folded_silently(
    gateway: GatewayThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal that reads whole becomes a part with no warning, and nothing is sent again."""
    leave_journal(gateway, monkeypatch)
    result = invoke("run", "job.yaml")
    assert result.exit_code == 0, result.output
    assert "could not be read whole" not in result.stderr
    assert gateway.gateway.stats.requests == ROWS
    assert pl.read_parquet(OUTPUT).height == ROWS
    assert not segment_files(parts_dir(OUTPUT))


def test_fresh_works_with_damaged_files(gateway: GatewayThread) -> None:
    """--fresh over a cut part and a cut output: no traceback, the run starts over."""
    leave_parts(gateway)
    pl.read_parquet(part_files(OUTPUT)[1]).write_parquet(OUTPUT)
    cut(OUTPUT, 0.5)
    cut(part_files(OUTPUT)[0], 0.5)
    result = invoke("run", "job.yaml", "--fresh")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert result.stderr.count("could not be read whole") == 2
    assert "--fresh: the earlier results are kept as" in result.stderr
    (before,) = OUTPUT.parent.glob("results.before-*.parquet")
    assert pl.read_parquet(before).height == 7  # the two parts that read
    assert pl.read_parquet(OUTPUT).height == ROWS
    assert gateway.gateway.stats.requests == 2 * ROWS


def test_validate_says_the_output_is_damaged(gateway: GatewayThread) -> None:
    """validate warns that the output cannot be read whole, exits 0 and moves nothing."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    assert invoke("run", "job.yaml").exit_code == 0
    cut(OUTPUT, 0.5)
    result = invoke("validate", "job.yaml")
    assert result.exit_code == 0, result.output
    assert f"warning: {OUTPUT} cannot be read whole" in result.stderr
    assert "the next run moves it aside" in result.stderr
    assert not list(OUTPUT.parent.glob("*.damaged-*"))


def test_a_heal_that_cannot_write_sends_nothing(
    gateway: GatewayThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the journal a dead run left cannot be written as a part, nothing is sent: exit 1."""
    segment = leave_journal(gateway, monkeypatch)

    def full(write: Callable[[Path], None], path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store, "replace_atomic", full)
    before = gateway.gateway.stats.all_requests
    result = invoke("run", "job.yaml")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if "batchrun: error:" in line]
    assert len(errors) == 1 and "No space left on device" in errors[0]
    assert gateway.gateway.stats.all_requests == before  # not even the model list
    assert len(read_journal(segment).results) == ROWS  # still there, whole


def test_a_damaged_row_group_costs_only_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A results file with one unreadable row group keeps the row groups that read."""
    from batchrun import heal

    monkeypatch.setattr(heal, "ROW_GROUP_ROWS", 100)
    output = tmp_path / "results.parquet"
    keys = [f"key-{i:03d}" for i in range(300)]
    frame = pl.DataFrame(
        {
            "request_key": keys,
            "status": ["ok"] * 300,
            "error_type": pl.Series([None] * 300, dtype=pl.String),
            "finished_at": [1.0] * 300,
        }
    )
    frame.write_parquet(output, row_group_size=100, compression="uncompressed")
    data = bytearray(output.read_bytes())
    middle = data.index(b"key-150")  # inside the second row group's data
    data[middle - 40 : middle + 40] = b"\xff" * 80
    output.write_bytes(bytes(data))
    (warning,) = heal.recover(output)
    assert "kept the 200 rows that read" in warning
    kept = pl.read_parquet(output)["request_key"].to_list()
    assert kept == keys[:100] + keys[200:]
    assert len(list(tmp_path.glob("results.parquet.damaged-*"))) == 1
