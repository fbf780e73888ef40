"""The commands about a job's results: status and merge (send nothing), cancel (batches)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from batchrun.cli_common import guard, writing

if TYPE_CHECKING:
    from batchrun.status import JobStatus


@click.command()
@click.argument("job", type=click.Path(dir_okay=False, path_type=str))
@click.option("--shard", metavar="I/N", help="The output of shard I of N (0-based).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def status(job: str, shard: str | None, as_json: bool, debug: bool) -> None:
    """Show what JOB's output holds, per model: done, failed, not yet sent, superseded.

    Also the last run's id, time and exit code, the cost so far, and the
    batches (mode: batch) and video tasks still pending, with their counts
    and age. Sends nothing and writes nothing.
    """
    from batchrun.batch.mode import BATCH_KINDS
    from batchrun.cli import _parse_shard
    from batchrun.prepare import prepare
    from batchrun.remote_work import TASK_KINDS, describe, read_record
    from batchrun.status import job_status

    slice_ = _parse_shard(shard)
    prepared = guard(
        debug, lambda: prepare(job, shard=slice_, require_key=False, check_output=False)
    )
    found = guard(debug, lambda: job_status(prepared))
    record = guard(debug, lambda: read_record(prepared.output))
    batches = describe(record.of(BATCH_KINDS))
    tasks = describe(record.of(TASK_KINDS), id_name="task_id")
    if as_json:
        payload = {
            **asdict(found),
            "cost_usd": found.cost_usd,
            "pending_batches": batches,
            "pending_tasks": tasks,
        }
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    _show_models(found)
    _show_pending(batches, "batch", "batch_id")
    _show_pending(tasks, "video task", "task_id")


def _show_models(found: JobStatus) -> None:
    """The table of models (done, failed by type, unsent, superseded, cost) and the last run."""
    from batchrun.display import money
    from batchrun.summary import format_table

    rows = [
        {
            "model": m.model,
            "done": m.done,
            "failed": sum(m.failed.values()),
            "why": ", ".join(f"{n} {kind}" for kind, n in m.failed.items()) or None,
            "unsent": m.unsent,
            "superseded": m.superseded,
            "cost": money(m.cost_usd),
        }
        for m in found.models
    ]
    columns = [
        ("model", "model"),
        ("done", "done"),
        ("failed", "failed"),
        ("why", "failed by type"),
        ("unsent", "not yet sent"),
        ("superseded", "superseded"),
        ("cost", "cost"),
    ]
    click.echo(format_table(rows, columns))
    last = found.last_run
    if last is None:
        click.echo(f"{found.output}: no run yet")
    else:
        click.echo(
            f"last run {last.get('run_id')} finished {last.get('finished_at')}, "
            f"exit {last.get('exit_code')}; cost so far {money(found.cost_usd)}"
        )


def _show_pending(rows: list[dict[str, Any]], noun: str, id_name: str) -> None:
    """One line per pending batch or task: id, model, state, counts as last polled, age."""
    for row in rows:
        counts = ", ".join(f"{n:,} {kind}" for kind, n in row["counts"].items() if n)
        click.echo(
            f"pending {noun} {row[id_name]} ({row['model']}, {row['status']}): "
            f"{row['finished']:,}/{row['requests']:,} finished"
            + (f" ({counts})" if counts else "")
            + f", submitted {row['age_h']:.1f} h ago"
        )


@click.command()
@click.argument("job", type=click.Path(dir_okay=False, path_type=str))
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def cancel(job: str, debug: bool) -> None:
    """Cancel JOB's pending batches (mode: batch) at the provider.

    What they answered before the cancel is collected by the next run, which
    also submits the rest again unless the job is no longer run.
    """
    from batchrun.batch.steps import cancel_batches
    from batchrun.lock import RunLock
    from batchrun.loop import run_async
    from batchrun.prepare import prepare
    from batchrun.store import new_run_id

    prepared = guard(debug, lambda: prepare(job, check_output=False))

    def go() -> tuple[list[str], int]:
        lock = RunLock(prepared.output)
        lock.acquire(new_run_id())
        try:
            return run_async(cancel_batches(prepared))
        finally:
            lock.release()

    asked, unconfirmed = guard(debug, go)
    if not asked and not unconfirmed:
        click.echo(f"{prepared.output}: no pending batches")
        return
    click.echo(
        f"asked the provider to cancel {len(asked)} batch(es): {', '.join(asked) or '-'}; "
        f"the next `batchrun run {job}` collects what they answered"
    )
    if unconfirmed:
        click.echo(f"{unconfirmed} submission(s) not yet confirmed; the next run checks them")


@click.command()
@click.argument("job", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "-o",
    "--output",
    metavar="PATH|URL",
    help="Where to write the merged file, a path or an s3://, gs:// or az:// URL "
    "(default: the job's output path).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def merge(job: str, output: str | None, debug: bool) -> None:
    """Join the shard outputs of JOB (run with --shard I/N) into one results file.

    With an object-storage output.path the shard objects are read from the
    store, and the merged file is uploaded atomically unless -o is a local path.
    """
    import tempfile

    from batchrun.config import load_job
    from batchrun.errors import JobError
    from batchrun.merge import fetch_remote_shards, shard_files, write_merged
    from batchrun.objstore import is_remote, sharded_url
    from batchrun.prepare import remote_output, resolve_output

    def go() -> tuple[str, int, int]:
        loaded = load_job(job)
        spec, name = loaded.job.output.path, loaded.job.name
        with tempfile.TemporaryDirectory(prefix="batchrun-merge-") as tmp:
            if is_remote(spec):
                url = remote_output(spec, name)
                target = output or sharded_url(url, None)
                shards = fetch_remote_shards(url, Path(tmp))
            else:
                target = output or str(resolve_output(spec, name))
                shards = shard_files(resolve_output(spec, name))
            if not shards:
                raise JobError(
                    f"no shard outputs beside {target} (NAME.shard-I-of-N.parquet, or "
                    "NAME/shard-I-of-N.parquet in object storage); "
                    f"run `batchrun run {job} --shard 0/N` and the other shards first"
                )
            rows = writing(target, lambda: write_merged(shards, target))
        return target, len(shards), rows

    target, count, rows = guard(debug, go)
    click.echo(f"merged {count} shard files into {target} ({rows:,} rows)")
