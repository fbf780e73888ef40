"""One run of a job, from job file to results file, stage by stage.

``prepare`` does everything that needs no network: load and validate the
job, read the data, compile the templates, build the plan, check the
output folder and the key. Any mistake there is a ``JobError`` and nothing
has been sent. ``execute`` then sends what is not yet done, streams the
results into Parquet parts, compacts them into the output and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from batchrun.config import (
    HttpProvider,
    Job,
    LoadedJob,
    MockProvider,
    load_job,
    resolve_api_key,
)
from batchrun.dataset import read_dataset
from batchrun.errors import JobError
from batchrun.limits import Limiter, ScopeLimits
from batchrun.plan import Plan, build_plan
from batchrun.progress import Progress
from batchrun.runner import RetryPolicy, Runner, RunOutcome
from batchrun.store import Result, ResultSink, compact, done_keys, new_run_id
from batchrun.templates import compile_prompt


@dataclass
class RunOptions:
    """What the command line adds to a job."""

    retry_errors: bool = False
    shard: tuple[int, int] | None = None


@dataclass
class Prepared:
    """A job checked end to end and ready to send."""

    loaded: LoadedJob
    plan: Plan
    output: Path
    api_key: str | None
    base_url: str | None


@dataclass
class RunReport:
    """What a finished (or stopped) run did."""

    run_id: str
    output: Path
    results: pl.DataFrame
    outcome: RunOutcome
    planned: int
    skipped: int
    sent_requests: int
    this_run: pl.DataFrame = field(default_factory=pl.DataFrame)
    paces: dict[str, float | None] = field(default_factory=dict)


def resolve_output(template: str, job_name: str, now: datetime | None = None) -> Path:
    """The output path with ``{name}``, ``{date}`` and ``{datetime}`` (UTC) filled in."""
    moment = now or datetime.now(UTC)
    return Path(
        template.format(
            name=job_name,
            date=moment.strftime("%Y-%m-%d"),
            datetime=moment.strftime("%Y-%m-%dT%H%M%SZ"),
        )
    )


def prepare(job_path: str | Path) -> Prepared:
    """Check the whole job without sending anything; ``JobError`` on the first mistake."""
    loaded = load_job(job_path)
    job = loaded.job
    where = f"{loaded.path}"
    try:
        frame = read_dataset(job.input)
        template = compile_prompt(job.prompt)
        plan = build_plan(job, frame, template)
    except JobError as exc:
        raise JobError(f"{where}: {exc}") from None
    output = resolve_output(job.output.path, job.name)
    _check_writable(output, where)
    if isinstance(job.provider, HttpProvider):
        try:
            api_key = resolve_api_key(job)
        except JobError as exc:
            raise JobError(f"{where}: {exc}") from None
        base_url: str | None = job.provider.base_url
    else:
        api_key = resolve_api_key(job)
        base_url = None
    return Prepared(loaded=loaded, plan=plan, output=output, api_key=api_key, base_url=base_url)


def _check_writable(output: Path, where: str) -> None:
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".batchrun-check-"):
            pass
    except OSError as exc:
        raise JobError(
            f"{where}: output.path: cannot write to the folder {folder} "
            f"({exc.strerror or exc}); choose a writable folder"
        ) from None


async def execute(
    prepared: Prepared,
    options: RunOptions,
    make_progress: Callable[[int], Progress],
    runner_ready: Callable[[Runner], None] | None = None,
) -> RunReport:
    """Send every request not yet done and write the results; return what happened."""
    job = prepared.loaded.job
    plan = prepared.plan
    output = prepared.output
    skip = done_keys(output, retry_errors=options.retry_errors)
    pending = sum(1 for _ in plan.requests(skip=skip, shard=options.shard))
    progress = make_progress(pending)
    sources = {
        model.name: plan.requests(skip=skip, shard=options.shard, models=[model])
        for model in plan.models
    }
    on_result = progress.update
    run_id = new_run_id()
    sink = ResultSink(
        output,
        run_id,
        job.name,
        flush_every=job.output.flush_every,
        flush_seconds=job.output.flush_seconds,
    )
    counted = [0]

    def record(result: Result) -> None:
        counted[0] += 1
        sink.add(result)
        on_result(result)

    limiter = build_limiter(job)
    retry = RetryPolicy(
        max_retries=job.limits.max_retries,
        max_retry_time_s=job.limits.max_retry_time_s,
        base_delay_s=job.limits.backoff_base_s,
        max_delay_s=max(job.limits.backoff_max_s, job.limits.backoff_base_s),
    )
    outcome = RunOutcome()
    try:
        async with _gateway_url(prepared) as base_url:
            from batchrun.client import GatewayClient

            headers = job.provider.headers if isinstance(job.provider, HttpProvider) else {}
            async with GatewayClient(
                base_url,
                prepared.api_key,
                timeout_s=job.limits.timeout_s,
                extra_headers=headers,
                max_connections=job.limits.concurrency,
            ) as client:
                runner = Runner(client, record, limiter, retry=retry)
                if runner_ready is not None:
                    runner_ready(runner)
                outcome = await runner.run(sources)
    finally:
        progress.close()
        sink.flush()
        results = compact(output, plan.prompts)
    this_run = results.filter(pl.col("run_id") == run_id)
    return RunReport(
        run_id=run_id,
        output=output,
        results=results,
        outcome=outcome,
        planned=plan.total,
        skipped=plan.total - pending,
        sent_requests=sum(state.sent for state in outcome.models.values()),
        this_run=this_run,
        paces={name: scope.pace_per_minute for name, scope in limiter.models.items()},
    )


def build_limiter(job: Job) -> Limiter:
    """The run's limits: the key's, and each model's under it (capped by the key's)."""
    limits = job.limits
    key = ScopeLimits(limits.concurrency, limits.rpm, limits.tpm, adaptive=False)
    models = {
        model.name: ScopeLimits(
            min(model.concurrency or limits.concurrency, limits.concurrency),
            model.rpm,
            model.tpm,
            adaptive=limits.adaptive and limits.rpm is None,
        )
        for model in job.models
    }
    return Limiter(key, models)


@contextlib.asynccontextmanager
async def _gateway_url(prepared: Prepared) -> AsyncIterator[str]:
    """The base URL to send to: the job's, or a built-in gateway started for this run."""
    provider = prepared.loaded.job.provider
    if isinstance(provider, MockProvider):
        from batchrun.gateway import Gateway, GatewaySettings, serve

        mock = provider.mock
        settings = GatewaySettings(
            models=mock.models,
            latency_ms=mock.latency_ms,
            model_latency_ms=dict(mock.model_latency_ms),
            latency_sigma=mock.latency_sigma,
            accuracy=dict(mock.accuracy),
            seed=mock.seed,
        )
        async with serve(Gateway(settings)) as url:
            yield url
    else:
        assert prepared.base_url is not None
        yield prepared.base_url


def run_job(
    prepared: Prepared, options: RunOptions, make_progress: Callable[[int], Progress]
) -> RunReport:
    """Run ``execute`` in a fresh event loop (the one ``asyncio.run`` of the process)."""
    return asyncio.run(execute(prepared, options, make_progress))
