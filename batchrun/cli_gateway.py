"""The commands that talk to a gateway without running a job: models, balance, gateway.

``models`` and ``balance`` ask a gateway (the job's, or ``--base-url``)
read-only questions; ``gateway`` serves the built-in one. They read only
what they need and create no file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from batchrun.cli_common import Failure, guard
from batchrun.display import money
from batchrun.errors import EXIT_OK, EXIT_USAGE, JobError

if TYPE_CHECKING:
    from batchrun.config import Job
    from batchrun.prepare import Prepared


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
    job: str | None, base_url: str | None, api_key_env: str | None, *, with_plan: bool
) -> tuple[Job | None, str | None, str | None, Prepared | None]:
    """The job (if any), base URL, key and, ``with_plan``, the job's plan a query goes to.

    Reads only what the query needs: the job file and key; the data and
    templates only for a plan. Creates nothing.
    """
    from batchrun.config import MockProvider, load_job, resolve_api_key
    from batchrun.prepare import prepare

    if (job is None) == (base_url is None):
        raise Failure("give either --job JOB or --base-url URL", EXIT_USAGE)
    if job is not None:
        prepared = prepare(job, require_key=True, check_output=False) if with_plan else None
        loaded = prepared.loaded if prepared is not None else load_job(job)
        try:
            key = resolve_api_key(loaded.job)
        except JobError as exc:
            raise loaded.locate(exc) from None
        url = "the built-in gateway" if isinstance(loaded.job.provider, MockProvider) else None
        return loaded.job, url, key, prepared
    from batchrun.params import check_base_url
    from batchrun.redact import secrets

    assert base_url is not None
    base_url = check_base_url(base_url, field="--base-url")
    key = os.environ.get(api_key_env, "").strip() if api_key_env else None
    if key:
        secrets.register(key)
    if api_key_env and not key:
        raise Failure(
            f"--api-key-env: the environment variable {api_key_env} is not set", EXIT_USAGE
        )
    return None, base_url, key, None


@click.command()
@_gateway_options
def models(
    job: str | None, base_url: str | None, api_key_env: str | None, as_json: bool, debug: bool
) -> None:
    """List the models the gateway offers to this key (GET /v1/models)."""
    from batchrun.errors import CatalogError, ConnectionFailure
    from batchrun.queries import fetch_models, query_gateway

    def go() -> list[Any]:
        target, url, key, _ = _gateway_target(job, base_url, api_key_env, with_plan=False)
        try:
            return query_gateway(target, url, key, fetch_models)
        except (CatalogError, ConnectionFailure) as exc:
            raise Failure(f"no model list from the gateway: {exc}", EXIT_USAGE) from None

    listed = sorted(guard(debug, go), key=lambda m: m.id)
    if as_json:
        click.echo(json.dumps([vars(m) for m in listed], indent=2))
        return
    rows = [{"id": m.id, "owned_by": m.owned_by, "created": _date(m.created)} for m in listed]
    click.echo(
        format_rows(rows, [("id", "model"), ("owned_by", "owned by"), ("created", "created")])
    )
    click.echo(f"{len(listed)} models", err=True)


@click.command()
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
    from batchrun.errors import CatalogError, ConnectionFailure
    from batchrun.estimate import estimated_cost
    from batchrun.queries import fetch_balance, query_gateway

    def go() -> tuple[Any, Any]:
        target, url, key, prepared = _gateway_target(job, base_url, api_key_env, with_plan=True)
        token = os.environ.get(access_token_env, "").strip() if access_token_env else None
        if token:
            from batchrun.redact import secrets

            secrets.register(token)
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

    found, prepared = guard(debug, go)
    low, high = estimated_cost(prepared) if prepared is not None else (None, None)
    if as_json:
        click.echo(
            json.dumps(
                {**vars(found), "job_cost_low_usd": low, "job_cost_high_usd": high}, indent=2
            )
        )
        return
    if found.unlimited:
        click.echo(f"balance: unlimited (used {money(found.used_usd or 0)}; from {found.source})")
    else:
        click.echo(
            f"balance: {money(found.remaining_usd)} left of {money(found.limit_usd or 0)} "
            f"(used {money(found.used_usd or 0)}; from {found.source})"
        )
    if low is not None:
        ceiling = "unbounded" if high is None else money(high)
        click.echo(f"this job: {money(low)} (input only) to {ceiling} (every output at max)")
        if high is not None and not found.unlimited and found.remaining_usd < high:
            click.echo("warning: the balance may not cover the job", err=True)


def _date(stamp: int | None) -> str | None:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d") if stamp else None


def format_rows(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Rows as an aligned table (imports the summary module only when needed)."""
    from batchrun.summary import format_table

    return format_table(rows, columns)


class _GatewayCommand(click.Command):
    """The gateway command, whose help lists every fault scenario (read when asked for)."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The docstring, then the key rule and the scenario table, unwrapped."""
        super().format_help_text(ctx, formatter)
        from batchrun.gateway import scenario_help

        formatter.write("\n")
        for line in scenario_help().splitlines():
            formatter.write(f"  {line}\n")


@click.command(cls=_GatewayCommand)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--latency-ms",
    "latencies",
    multiple=True,
    metavar="MS|MODEL=MS",
    help="Answer latency for every model, or for one (repeatable).",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="CODE=RATE",
    help="Answer this share of requests with a fault scenario, like S13=0.05 (repeatable).",
)
@click.option("--model", "models", multiple=True, help="Offer only these models (repeatable).")
@click.option(
    "--batches",
    "batch_specs",
    multiple=True,
    metavar="[SETTING=VALUE]",
    help="Serve OpenAI's Batch API and Anthropic's Message Batches (404 without it); "
    "settings: delay_s, line_fail_rate, expire_batches, expire_done, invalid_batches, "
    "cut_files, missing_files, accept_delay_s (repeatable; 'on' for defaults).",
)
def gateway(
    host: str,
    port: int,
    latencies: tuple[str, ...],
    faults: tuple[str, ...],
    models: tuple[str, ...],
    batch_specs: tuple[str, ...],
) -> None:
    """Serve the built-in OpenAI-compatible gateway for other clients and tests.

    It answers chat completions, responses, messages, gemini and embeddings
    like a one-api/new-api gateway, with deterministic replies and real
    usage. Send the header X-Sim-Scenario: CODE to reproduce one fault on
    one request, or --fault CODE=RATE to mix faults in at random. With
    --batches it also holds batches (for as long as it runs), e.g.
    --batches delay_s=30 --batches expire_batches=1 --batches expire_done=30.
    """
    import asyncio

    from batchrun.gateway import Gateway, GatewaySettings, parse_fault, parse_latency, serve

    settings = GatewaySettings(models=list(models) or None)
    try:
        for spec in faults:
            code, rate = parse_fault(spec)
            settings.fault_rates[code] = rate
        for spec in latencies:
            model, value = parse_latency(spec)
            if model is None:
                settings.latency_ms = value
            else:
                settings.model_latency_ms[model] = value
        if batch_specs:
            from batchrun.gateway.batches import parse_batch_settings

            settings.batches = parse_batch_settings(batch_specs)
    except ValueError as exc:
        raise Failure(str(exc), EXIT_USAGE) from None

    async def forever() -> None:
        async with serve(Gateway(settings), host=host, port=port) as url:
            click.echo(f"batchrun gateway listening on {url} (Ctrl-C to stop)", err=True)
            await asyncio.Event().wait()

    from batchrun.loop import run_async

    try:
        run_async(forever())
    except KeyboardInterrupt:
        sys.exit(EXIT_OK)
    except OSError as exc:
        raise Failure(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_USAGE
        ) from None
