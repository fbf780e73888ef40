"""The commands about a job's results that send nothing: status and merge."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from batchrun.cli_common import guard, writing


@click.command()
@click.argument("job", type=click.Path(dir_okay=False, path_type=str))
@click.option("--shard", metavar="I/N", help="The output of shard I of N (0-based).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def status(job: str, shard: str | None, as_json: bool, debug: bool) -> None:
    """Show what JOB's output holds, per model: done, failed, not yet sent, superseded.

    Also the last run's id, time and exit code, and the cost so far. Sends
    nothing and writes nothing.
    """
    from batchrun.cli import _parse_shard
    from batchrun.display import money
    from batchrun.prepare import prepare
    from batchrun.status import job_status
    from batchrun.summary import format_table

    slice_ = _parse_shard(shard)
    found = guard(
        debug, lambda: job_status(prepare(job, shard=slice_, require_key=False, check_output=False))
    )
    if as_json:
        payload = {**asdict(found), "cost_usd": found.cost_usd}
        click.echo(json.dumps(payload, indent=2, default=str))
        return
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


@click.command()
@click.argument("job", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the merged file (default: the job's output path).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def merge(job: str, output: Path | None, debug: bool) -> None:
    """Join the shard outputs of JOB (run with --shard I/N) into one results file."""
    from batchrun.config import load_job
    from batchrun.errors import JobError
    from batchrun.merge import merge_shards, shard_files
    from batchrun.prepare import resolve_output

    def go() -> tuple[Path, int, int]:
        loaded = load_job(job)
        target = output or resolve_output(loaded.job.output.path, loaded.job.name)
        shards = shard_files(resolve_output(loaded.job.output.path, loaded.job.name))
        if not shards:
            raise JobError(
                f"no shard outputs beside {target} (NAME.shard-I-of-N.parquet); "
                f"run `batchrun run {job} --shard 0/N` and the other shards first"
            )
        rows = writing(target, lambda: merge_shards(shards, target))
        return target, len(shards), rows

    target, count, rows = guard(debug, go)
    click.echo(f"merged {count} shard files into {target} ({rows:,} rows)")
