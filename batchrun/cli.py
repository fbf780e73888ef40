"""The command line: parse options, call the stages, print, and choose the exit code.

No logic lives here beyond wiring. batchrun's own errors become one line on
stderr and their exit code (2 bad input, 3 refused by the gateway); other
exceptions are bugs and keep their traceback. Heavy modules (Polars,
aiohttp) are imported inside the commands so ``batchrun --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from batchrun import __version__
from batchrun.cli_common import Failure, guard, writing
from batchrun.errors import (
    EXIT_SIGINT,
    EXIT_USAGE,
    JobError,
)
from batchrun.run_report import MaxFailures

if TYPE_CHECKING:
    from batchrun.console import Console
    from batchrun.run import RunOptions
    from batchrun.run_report import RunReport

T = TypeVar("T")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="batchrun")
def main() -> None:
    """Run a prompt set against several models on an OpenAI-compatible gateway.

    Every response, with its token usage, latency and cost, goes to Parquet,
    so models can be compared on the same prompts. Start with
    `batchrun run jobs/demo.yaml`: it needs no key and no network.

    \b
    Exit codes: 0 all done; 1 some requests failed (above --max-failures);
    2 bad usage, job file or data (nothing sent); 3 the gateway refused the
    run (bad key, no balance); 130 interrupted (what finished is saved).
    """


def entry() -> None:
    """The ``batchrun`` command (the console script and ``python -m batchrun``)."""
    main()


@main.command()
@click.argument("job", type=click.Path(dir_okay=False, path_type=str))
@click.option("--dry-run", is_flag=True, help="Check the job and print the plan; send nothing.")
@click.option("--retry-errors", is_flag=True, help="Send again the requests that failed before.")
@click.option(
    "--max-failures",
    default="0",
    show_default=True,
    metavar="N|P%",
    help="Failed requests (count or percentage) tolerated before exiting with code 1.",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Start over: the earlier results are kept under another name, never deleted.",
)
@click.option(
    "--shard",
    metavar="I/N",
    help="Run only slice I of N (0-based) of the requests; 'auto' reads the scheduler's "
    "variables (JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID, BATCHRUN_SHARD_INDEX).",
)
@click.option(
    "--grace",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds requests in flight may take to finish after Ctrl-C or SIGTERM.",
)
@click.option(
    "--no-model-check",
    is_flag=True,
    help="Send even to models the gateway's model list does not show (warn only).",
)
@click.option(
    "--wait",
    is_flag=True,
    help="mode: batch: stay and poll until every submitted batch is collected.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def run(
    job: str,
    dry_run: bool,
    retry_errors: bool,
    max_failures: str,
    fresh: bool,
    shard: str | None,
    grace: float,
    no_model_check: bool,
    wait: bool,
    quiet: bool,
    as_json: bool,
    debug: bool,
) -> None:
    """Run JOB: send every request not yet done and write the results to Parquet.

    Models in mode: batch go through the provider's batch API at half price:
    a run collects the batches that finished and submits what is missing,
    then exits; run it again later (from cron) or add --wait.
    """
    from batchrun.console import Console
    from batchrun.run import RunOptions

    console = Console(quiet=quiet)
    try:
        tolerance = MaxFailures.parse(max_failures)
        if tolerance is None:
            raise Failure(
                f"--max-failures: {max_failures!r} is neither a count (5) nor a percentage (2%)",
                EXIT_USAGE,
            )
        slice_ = _parse_shard(shard)
        options = RunOptions(
            retry_errors=retry_errors,
            shard=slice_,
            fresh=fresh,
            grace_s=grace,
            model_check=not no_model_check,
            max_failures=tolerance,
            wait=wait,
        )
        report = _run_job(job, options, console, dry_run=dry_run, debug=debug)
    except Failure as failure:
        if as_json:  # a script parsing stdout gets one JSON object whatever happens
            click.echo(json.dumps({"exit_code": failure.code, "error": failure.message}))
        raise
    if report is None:
        return
    from batchrun.console import print_report

    print_report(report, console, as_json=as_json)
    sys.exit(report.exit_code)


def _run_job(
    job: str, options: RunOptions, console: Console, *, dry_run: bool, debug: bool
) -> RunReport | None:
    """Check the job, then run it (or, with ``dry_run``, show its plan and return None)."""
    from batchrun.console import show_plan
    from batchrun.loop import run_async
    from batchrun.prepare import prepare
    from batchrun.run import execute

    prepared = guard(debug, lambda: prepare(job, shard=options.shard))
    if dry_run:
        show_plan(prepared)
        return None
    try:
        return guard(debug, lambda: run_async(execute(prepared, options, console)))
    except KeyboardInterrupt:
        console.line("batchrun: interrupted; finished results are saved")
        sys.exit(EXIT_SIGINT)


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    if value == "auto":
        from batchrun.shard_env import auto_shard

        try:
            return auto_shard(os.environ)
        except ValueError as exc:
            raise Failure(str(exc), EXIT_USAGE) from None
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        index, count = -1, 0
    if count < 1 or not 0 <= index < count:
        raise Failure(f"--shard: {value!r} should be I/N with 0 <= I < N, like 0/4", EXIT_USAGE)
    return index, count


@main.command()
@click.argument("job", type=click.Path(dir_okay=False, path_type=str))
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def validate(job: str, debug: bool) -> None:
    """Check JOB without sending anything, then print its plan."""
    from batchrun.console import show_plan
    from batchrun.heal import inspect
    from batchrun.prepare import prepare

    prepared = guard(debug, lambda: prepare(job, require_key=False))
    show_plan(prepared)
    for warning in inspect(prepared.output):
        click.echo(f"batchrun: {warning}", err=True)
    if prepared.key_problem is not None:
        raise Failure(prepared.key_problem, EXIT_USAGE)


@main.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--table",
    type=click.Choice(["models", "pairwise", "runs"]),
    default="models",
    show_default=True,
    help="The table --format csv writes (one table per file).",
)
@click.option(
    "--wide",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the side-by-side table (one row per prompt) to a .parquet or .csv file.",
)
@click.option(
    "--allow-different",
    is_flag=True,
    help="Compare files of different jobs or prompt sets as runs of one job anyway.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def compare(
    results: tuple[Path, ...],
    fmt: str,
    table: str,
    wide: Path | None,
    allow_different: bool,
    debug: bool,
) -> None:
    """Compare the models in RESULTS, and each run with the one before.

    Give one results file to compare its models (ok rate, errors, latency,
    tokens, cost, scores with 95% intervals, pairwise tests). Give several
    runs of one job, oldest first, to also see what changed from run to run;
    the shards of one run count as one run.
    """
    from batchrun import compare as comparing
    from batchrun.compare_render import render

    def go() -> str:
        comparison = comparing.compare_files(list(results), allow_different, _warn)
        if wide is not None:
            side = comparing.side_by_side(comparison.latest.frame)
            if wide.suffix == ".csv":
                writing(wide, lambda: side.write_csv(wide))
            else:
                writing(wide, lambda: side.write_parquet(wide))
        return render(comparison, fmt, table)

    def _warn(line: str) -> None:
        click.echo(f"batchrun: warning: {line}", err=True)

    click.echo(guard(debug, go), nl=False)


@main.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="Where to write the HTML file.",
)
@click.option("--title", help="The report's title (default: from the job name).")
@click.option(
    "--allow-different",
    is_flag=True,
    help="Compare files of different jobs or prompt sets as runs of one job anyway.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def report(
    results: tuple[Path, ...], output: Path, title: str | None, allow_different: bool, debug: bool
) -> None:
    """Write RESULTS as one self-contained HTML report (no network needed to view it).

    Give several runs of one job, oldest first, to add run-over-run trends.
    """
    from batchrun.compare import compare_files
    from batchrun.report import build_report

    def go() -> None:
        comparison = compare_files(list(results), allow_different, _warn)
        page = build_report(comparison, title, links_from=output.parent)
        writing(output, lambda: output.write_text(page, encoding="utf-8"))

    def _warn(line: str) -> None:
        click.echo(f"batchrun: warning: {line}", err=True)

    guard(debug, go)
    click.echo(f"wrote {output}")


@main.command()
@click.argument("job", type=click.Path(dir_okay=False, path_type=str))
@click.argument("results", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def score(job: str, results: Path | None, debug: bool) -> None:
    """Score RESULTS (default: the job's output) with the scores JOB declares."""
    from batchrun.config import load_job
    from batchrun.prepare import resolve_output
    from batchrun.scoring import score_file

    def go() -> tuple[Path, int, str]:
        loaded = load_job(job)
        target = results or resolve_output(loaded.job.output.path, loaded.job.name)
        if not target.exists():
            raise JobError(f"{target}: no such results file")
        names = ", ".join(s.name for s in loaded.job.scores if s.grader != "judge")
        return target, writing(target, lambda: score_file(target, loaded.job.scores)), names

    target, count, names = guard(debug, go)
    click.echo(f"scored {count} rows of {target} ({names or 'no scores declared'})")


@main.command()
@click.option(
    "--markdown", is_flag=True, help="Print the field reference of job files as Markdown."
)
def schema(markdown: bool) -> None:
    """Print the JSON Schema of job files, for editors to complete and check them."""
    from batchrun.job_schema import field_reference, job_schema

    click.echo(field_reference() if markdown else json.dumps(job_schema(), indent=2), nl=False)
    if not markdown:
        click.echo()


def _register_gateway_commands() -> None:
    from batchrun import cli_gateway, cli_results

    for command in (
        cli_gateway.models,
        cli_gateway.balance,
        cli_gateway.gateway,
        cli_results.status,
        cli_results.merge,
        cli_results.cancel,
    ):
        main.add_command(command)


_register_gateway_commands()
