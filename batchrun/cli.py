"""The command line: parse options, call the stages, print, and choose the exit code.

No logic lives here beyond wiring. batchrun's own errors become one line on
stderr and their exit code (2 bad input, 3 refused by the gateway); other
exceptions are bugs and keep their traceback. Heavy modules (Polars,
aiohttp) are imported inside the commands so ``batchrun --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from batchrun import __version__
from batchrun.errors import (
    EXIT_FAILURES,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    BatchrunError,
    JobError,
    OutputError,
)

if TYPE_CHECKING:
    from batchrun.pipeline import Prepared, RunReport
    from batchrun.progress import Progress

T = TypeVar("T")

SUMMARY_COLUMNS = [
    ("model", "model"),
    ("ok", "ok"),
    ("failed", "failed"),
    ("prompt_tokens", "prompt tok"),
    ("completion_tokens", "completion tok"),
    ("latency_p50_s", "p50 s"),
    ("latency_p95_s", "p95 s"),
    ("rate_per_s", "req/s"),
    ("rate_limited", "429s"),
    ("pace_per_min", "pace/min"),
]


class Failure(click.ClickException):
    """A message for the user and the exit code that goes with it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        """The exit code Click uses for this failure."""
        return self.code

    def show(self, file: Any = None) -> None:
        """Print ``batchrun: error: <message>`` on stderr."""
        click.echo(f"batchrun: error: {self.message}", err=True)


def _writing(path: Path, write: Callable[[], T]) -> T:
    """Call ``write``; a failure to write ``path`` becomes one clear ``OutputError``."""
    import polars as pl

    try:
        return write()
    except (OSError, pl.exceptions.PolarsError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputError(
            f"cannot write {path}: {reason}; check that its folder exists, is writable and has room"
        ) from None


def _guard(debug: bool, action: Callable[[], T]) -> T:
    """Run ``action``; turn batchrun's own errors into ``Failure``."""
    try:
        return action()
    except BatchrunError as exc:
        if debug:
            traceback.print_exc()
        raise Failure(str(exc), exc.exit_code) from None


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


def entry() -> NoReturn:
    """The ``batchrun`` command: ``main``, then an exit without the interpreter's teardown.

    Everything batchrun writes is closed and synced before a command returns;
    tearing down Polars, pydantic and aiohttp module by module would only add
    about a tenth of a second to every run. Standard streams are flushed first.
    """
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:  # pragma: no cover - click's standalone mode always raises SystemExit
        code = 0
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    _hard_exit(0 if code is None else code)


def _hard_exit(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


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
@click.option("--shard", metavar="I/N", help="Run only slice I of N (0-based) of the requests.")
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
    quiet: bool,
    as_json: bool,
    debug: bool,
) -> None:
    """Run JOB: send every request not yet done and write the results to Parquet."""
    from batchrun.pipeline import RunOptions, prepare

    tolerance = _parse_max_failures(max_failures)
    slice_ = _parse_shard(shard)
    prepared = _guard(debug, lambda: prepare(job, shard=slice_))
    if dry_run:
        _print_plan(prepared)
        return
    options = RunOptions(
        retry_errors=retry_errors,
        shard=slice_,
        fresh=fresh,
        grace_s=grace,
        model_check=not no_model_check,
    )
    report = _execute(prepared, options, quiet=quiet, debug=debug)
    _finish(prepared, report, tolerance, as_json=as_json)


def _execute(prepared: Prepared, options: Any, *, quiet: bool, debug: bool) -> RunReport:
    from batchrun.pipeline import run_job
    from batchrun.progress import make_progress

    def progress(total: int) -> Progress:
        return make_progress(total, quiet=quiet)

    def notify(message: str) -> None:
        click.echo(f"batchrun: {message}", err=True)

    try:
        return _guard(debug, lambda: run_job(prepared, options, progress, notify))
    except KeyboardInterrupt:
        click.echo("batchrun: interrupted; finished results are saved", err=True)
        sys.exit(EXIT_SIGINT)


def _finish(
    prepared: Prepared, report: RunReport, tolerance: tuple[float, bool], *, as_json: bool
) -> NoReturn:
    from batchrun.pipeline import record_manifest
    from batchrun.summary import format_table

    rows = report.models_summary
    seconds = max(report.outcome.finished - report.outcome.started, 1e-9)
    for row in rows:
        state = report.outcome.models.get(row["model"])
        row["rate_per_s"] = row["requests"] / seconds
        row["rate_limited"] = state.rate_limited if state else 0
        row["stopped"] = state.stopped_reason if state else None
        row["pace_per_min"] = report.paces.get(row["model"])
    done = sum(report.by_status.values())
    failed = done - report.by_status.get("ok", 0)
    fatal = report.outcome.fatal
    code = EXIT_OK
    if fatal is not None:
        code = EXIT_REFUSED
    elif report.signal is not None:
        code = EXIT_SIGTERM if report.signal == signal.SIGTERM else EXIT_SIGINT
    elif (
        report.storage_error is not None
        or report.budget_reached is not None
        or _over(failed, done, tolerance)
    ):
        code = EXIT_FAILURES
    manifest = record_manifest(prepared, report, code)
    if as_json:
        payload = {
            "run_id": report.run_id,
            "output": str(report.output),
            "planned": report.planned,
            "already_done": report.skipped,
            "sent": done,
            "failed": failed,
            "exit_code": code,
            "manifest": str(manifest),
            "models": rows,
        }
        click.echo(json.dumps(payload, default=str, indent=2))
    else:
        if rows:
            click.echo(format_table(rows, SUMMARY_COLUMNS))
        for row in rows:
            if row["stopped"]:
                click.echo(f"model {row['model']} was stopped: {row['stopped']}", err=True)
        click.echo(
            f"{done} requests this run ({failed} failed), {report.skipped} already done; "
            f"results in {report.output} ({report.total_rows} rows)",
            err=True,
        )
    if fatal is not None:
        click.echo(f"batchrun: error: the gateway refused the run: {fatal.message}", err=True)
    elif report.signal is not None:
        click.echo(
            "batchrun: interrupted; finished results are saved, rerun to send the rest", err=True
        )
    elif report.storage_error is not None:
        click.echo(f"batchrun: error: {report.storage_error}", err=True)
    elif report.budget_reached is not None:
        click.echo(
            f"batchrun: stopped sending: {report.budget_reached}; raise limits.budget_usd "
            "and rerun to send the rest",
            err=True,
        )
    elif code == EXIT_FAILURES:
        click.echo(
            f"batchrun: {failed} requests failed; rerun with --retry-errors to send them again",
            err=True,
        )
    sys.exit(code)


def _over(failed: int, done: int, tolerance: tuple[float, bool]) -> bool:
    limit, is_percent = tolerance
    if is_percent:
        return done > 0 and failed * 100.0 / done > limit
    return failed > limit


def _parse_max_failures(value: str) -> tuple[float, bool]:
    text = value.strip()
    try:
        if text.endswith("%"):
            number = float(text[:-1])
            if 0 <= number <= 100:
                return number, True
        else:
            number = int(text)
            if number >= 0:
                return float(number), False
    except ValueError:
        pass
    raise Failure(
        f"--max-failures: {value!r} is neither a count (5) nor a percentage (2%)", EXIT_USAGE
    )


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        index, count = -1, 0
    if count < 1 or not 0 <= index < count:
        raise Failure(f"--shard: {value!r} should be I/N with 0 <= I < N, like 0/4", EXIT_USAGE)
    return index, count


def _print_plan(prepared: Prepared) -> None:
    plan = prepared.plan
    job = prepared.loaded.job
    samples = job.samples
    click.echo(f"job {job.name} ({prepared.loaded.path}): job file, data and templates check out")
    click.echo(
        f"plan: {plan.rows} rows x {len(plan.models)} models x {samples} samples = "
        f"{plan.total} requests"
    )
    click.echo(f"estimated input tokens: {plan.estimated_input_tokens():,}")
    uncapped = [m.name for m in plan.models if not m.max_output_tokens]
    max_out = sum(m.max_output_tokens for m in plan.models) * plan.rows * samples
    if uncapped:
        click.echo(
            f"maximum output tokens: not capped for {', '.join(uncapped)} "
            "(set params.max_tokens to cap it)"
        )
    else:
        click.echo(f"maximum output tokens: {max_out:,}")
    from batchrun.pipeline import estimated_cost

    low, high = estimated_cost(prepared)
    unpriced = prepared.prices.unpriced(job.models)
    if low is not None:
        ceiling = "unbounded" if high is None else f"${high:,.4f}"
        click.echo(f"estimated cost: ${low:,.4f} (input only) to {ceiling} (every output at max)")
    if unpriced:
        click.echo(f"no price for: {', '.join(unpriced)} (add them under prices:)")
    click.echo(f"output: {prepared.output}")


@main.command()
@click.argument("job", type=click.Path(dir_okay=False, path_type=str))
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def validate(job: str, debug: bool) -> None:
    """Check JOB without sending anything, then print its plan."""
    from batchrun.pipeline import prepare

    prepared = _guard(debug, lambda: prepare(job, require_key=False))
    _print_plan(prepared)
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
                _writing(wide, lambda: side.write_csv(wide))
            else:
                _writing(wide, lambda: side.write_parquet(wide))
        return render(comparison, fmt, table)

    def _warn(line: str) -> None:
        click.echo(f"batchrun: warning: {line}", err=True)

    click.echo(_guard(debug, go), nl=False)


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
        page = build_report(compare_files(list(results), allow_different, _warn), title)
        _writing(output, lambda: output.write_text(page, encoding="utf-8"))

    def _warn(line: str) -> None:
        click.echo(f"batchrun: warning: {line}", err=True)

    _guard(debug, go)
    click.echo(f"wrote {output}")


@main.command()
@click.argument("job", type=click.Path(dir_okay=False, path_type=str))
@click.argument("results", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def score(job: str, results: Path | None, debug: bool) -> None:
    """Score RESULTS (default: the job's output) with the scores JOB declares."""
    from batchrun.config import load_job
    from batchrun.pipeline import resolve_output
    from batchrun.scoring import score_file

    def go() -> tuple[Path, int, str]:
        loaded = load_job(job)
        target = results or resolve_output(loaded.job.output.path, loaded.job.name)
        if not target.exists():
            raise JobError(f"{target}: no such results file")
        names = ", ".join(s.name for s in loaded.job.scores if s.grader != "judge")
        return target, _writing(target, lambda: score_file(target, loaded.job.scores)), names

    target, count, names = _guard(debug, go)
    click.echo(f"scored {count} rows of {target} ({names or 'no scores declared'})")


def _gateway_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options that say which gateway a query goes to, and how to print the answer."""
    options = [
        click.option(
            "--job", type=click.Path(dir_okay=False, path_type=str), help="Use JOB's gateway."
        ),
        click.option("--base-url", help="A gateway's base URL, like https://aihubmix.com/v1."),
        click.option("--api-key-env", metavar="VAR", help="The key's variable (with --base-url)."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        click.option("--debug", is_flag=True, help="Show tracebacks of errors."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _gateway_target(
    job: str | None, base_url: str | None, api_key_env: str | None
) -> tuple[Any, str | None, str | None, Any]:
    """The job (if any), base URL, key and prepared plan (if a job) a query goes to."""
    import os

    from batchrun.config import MockProvider, resolve_api_key
    from batchrun.pipeline import prepare

    if (job is None) == (base_url is None):
        raise Failure("give either --job JOB or --base-url URL", EXIT_USAGE)
    if job is not None:
        prepared = prepare(job, require_key=True)
        loaded = prepared.loaded.job
        url = "the built-in gateway" if isinstance(loaded.provider, MockProvider) else None
        return loaded, url, resolve_api_key(loaded), prepared
    key = os.environ.get(api_key_env, "").strip() if api_key_env else None
    if api_key_env and not key:
        raise Failure(
            f"--api-key-env: the environment variable {api_key_env} is not set", EXIT_USAGE
        )
    return None, base_url, key, None


@main.command()
@_gateway_options
def models(
    job: str | None, base_url: str | None, api_key_env: str | None, as_json: bool, debug: bool
) -> None:
    """List the models the gateway offers to this key (GET /v1/models)."""
    from batchrun.catalog import CatalogError
    from batchrun.errors import ConnectionFailure
    from batchrun.pipeline import fetch_models, query_gateway

    def go() -> list[Any]:
        target, url, key, _ = _gateway_target(job, base_url, api_key_env)
        try:
            return query_gateway(target, url, key, fetch_models)
        except (CatalogError, ConnectionFailure) as exc:
            raise Failure(f"no model list from the gateway: {exc}", EXIT_USAGE) from None

    listed = sorted(_guard(debug, go), key=lambda m: m.id)
    if as_json:
        click.echo(json.dumps([vars(m) for m in listed], indent=2))
        return
    rows = [{"id": m.id, "owned_by": m.owned_by, "created": _date(m.created)} for m in listed]
    click.echo(
        format_rows(rows, [("id", "model"), ("owned_by", "owned by"), ("created", "created")])
    )
    click.echo(f"{len(listed)} models", err=True)


@main.command()
@_gateway_options
@click.option(
    "--access-token-env",
    metavar="VAR",
    help="Read /api/user/self with the account's access token from VAR (not the API key).",
)
def balance(
    job: str | None,
    base_url: str | None,
    api_key_env: str | None,
    as_json: bool,
    debug: bool,
    access_token_env: str | None,
) -> None:
    """Show what is left on the key, and with --job what the job may cost against it.

    Reads /dashboard/billing/subscription and /dashboard/billing/usage, or
    new-api's /api/usage/token/ (500,000 quota = $1).
    """
    from batchrun.catalog import CatalogError
    from batchrun.errors import ConnectionFailure
    from batchrun.pipeline import estimated_cost, fetch_balance, query_gateway

    def go() -> tuple[Any, Any]:
        import os

        target, url, key, prepared = _gateway_target(job, base_url, api_key_env)
        token = os.environ.get(access_token_env, "").strip() if access_token_env else None
        if access_token_env and not token:
            raise Failure(
                f"--access-token-env: the environment variable {access_token_env} is not set",
                EXIT_USAGE,
            )

        async def ask(client: Any) -> Any:
            return await fetch_balance(client, token)

        try:
            return query_gateway(target, url, key, ask), prepared
        except (CatalogError, ConnectionFailure) as exc:
            raise Failure(f"no balance from the gateway: {exc}", EXIT_USAGE) from None

    found, prepared = _guard(debug, go)
    low, high = estimated_cost(prepared) if prepared is not None else (None, None)
    if as_json:
        click.echo(
            json.dumps(
                {**vars(found), "job_cost_low_usd": low, "job_cost_high_usd": high}, indent=2
            )
        )
        return
    if found.unlimited:
        click.echo(f"balance: unlimited (used ${found.used_usd or 0:,.4f}; from {found.source})")
    else:
        click.echo(
            f"balance: ${found.remaining_usd:,.4f} left of ${found.limit_usd or 0:,.2f} "
            f"(used ${found.used_usd or 0:,.4f}; from {found.source})"
        )
    if low is not None:
        ceiling = "unbounded" if high is None else f"${high:,.4f}"
        click.echo(f"this job: ${low:,.4f} (input only) to {ceiling} (every output at max)")
        if high is not None and not found.unlimited and found.remaining_usd < high:
            click.echo("warning: the balance may not cover the job", err=True)


def _date(stamp: int | None) -> str | None:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d") if stamp else None


def format_rows(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Rows as an aligned table (imports the summary module only when needed)."""
    from batchrun.summary import format_table

    return format_table(rows, columns)


@main.command()
def schema() -> None:
    """Print the JSON Schema of job files, for editors to complete and check them."""
    from batchrun.config import Job

    document = Job.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "batchrun job"
    click.echo(json.dumps(document, indent=2))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option("--latency-ms", default=0.0, show_default=True, type=click.FloatRange(0))
@click.option("--model", "models", multiple=True, help="Offer only these models (repeatable).")
def gateway(host: str, port: int, latency_ms: float, models: tuple[str, ...]) -> None:
    """Serve the built-in OpenAI-compatible gateway for other clients.

    Any key is accepted. Send the header X-Sim-Scenario (S07 ... S26) to
    reproduce a gateway fault on one request.
    """
    import asyncio

    from batchrun.gateway import Gateway, GatewaySettings, serve

    settings = GatewaySettings(models=list(models) or None, latency_ms=latency_ms)

    async def forever() -> None:
        async with serve(Gateway(settings), host=host, port=port) as url:
            click.echo(f"batchrun gateway listening on {url} (Ctrl-C to stop)", err=True)
            await asyncio.Event().wait()

    from batchrun.pipeline import run_async

    try:
        run_async(forever())
    except KeyboardInterrupt:
        sys.exit(EXIT_OK)
    except OSError as exc:
        raise Failure(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_USAGE
        ) from None
