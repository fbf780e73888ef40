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
import gc
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

if TYPE_CHECKING:
    from batchrun.client import GatewayClient
from batchrun.catalog import (
    Balance,
    CatalogError,
    ModelInfo,
    parse_models,
    parse_subscription,
    parse_token_usage,
    parse_user_self,
)
from batchrun.config import (
    HttpProvider,
    Job,
    LoadedJob,
    MockProvider,
    load_job,
    resolve_api_key,
)
from batchrun.dataset import read_dataset
from batchrun.errors import ConnectionFailure, JobError
from batchrun.limits import Limiter, ScopeLimits
from batchrun.lock import RunLock
from batchrun.manifest import describe_run, write_manifest
from batchrun.plan import Plan, Request, build_plan
from batchrun.pricing import PER_TOKENS, PriceTable, cost_usd, load_prices
from batchrun.progress import Progress
from batchrun.runner import RetryPolicy, Runner, RunOutcome
from batchrun.store import (
    Result,
    ResultSink,
    compact,
    done_keys,
    new_run_id,
    part_files,
)
from batchrun.summary import RunTally
from batchrun.templates import compile_prompt, screen_rows

T = TypeVar("T")

# Once the model list has answered (the key is good), a probe unanswered for this many
# list round trips, and at least the minimum, holds the other requests back no longer.
PROBE_GRACE_FACTOR = 3.0
PROBE_GRACE_MIN_S = 0.05


@dataclass
class RunOptions:
    """What the command line adds to a job."""

    retry_errors: bool = False
    shard: tuple[int, int] | None = None
    fresh: bool = False
    grace_s: float = 10.0
    model_check: bool = True


@dataclass
class Prepared:
    """A job checked end to end and ready to send."""

    loaded: LoadedJob
    plan: Plan
    output: Path
    api_key: str | None
    base_url: str | None
    prices: PriceTable
    key_problem: str | None = None


@dataclass
class RunReport:
    """What a finished (or stopped) run did."""

    run_id: str
    output: Path
    total_rows: int
    outcome: RunOutcome
    planned: int
    skipped: int
    models_summary: list[dict[str, Any]] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)
    paces: dict[str, float | None] = field(default_factory=dict)
    signal: int | None = None
    storage_error: str | None = None
    budget_reached: str | None = None
    spent_usd: float = 0.0


def resolve_output(
    template: str,
    job_name: str,
    now: datetime | None = None,
    shard: tuple[int, int] | None = None,
) -> Path:
    """The output path with ``{name}``, ``{date}``, ``{datetime}`` (UTC) and ``{shard}``.

    A sharded run whose path has no ``{shard}`` gets ``.shard-I-of-N`` before
    ``.parquet``, so shards never share an output.
    """
    moment = now or datetime.now(UTC)
    shard_text = f"{shard[0]}-of-{shard[1]}" if shard else "all"
    if shard and "{shard}" not in template:
        template = template.removesuffix(".parquet") + ".shard-{shard}.parquet"
    return Path(
        template.format(
            name=job_name,
            date=moment.strftime("%Y-%m-%d"),
            datetime=moment.strftime("%Y-%m-%dT%H%M%SZ"),
            shard=shard_text,
        )
    )


def prepare(
    job_path: str | Path,
    shard: tuple[int, int] | None = None,
    *,
    require_key: bool = True,
) -> Prepared:
    """Check the whole job without sending anything; ``JobError`` on the first mistake.

    With ``require_key=False`` a missing key is kept in ``key_problem``
    instead, so ``validate`` can still show the plan.
    """
    loaded = load_job(job_path)
    job = loaded.job
    try:
        frame = read_dataset(job.input)
        template = compile_prompt(job.prompt)
        frame, template = screen_rows(job, frame, template)
        plan = build_plan(job, frame, template)
        if job.scores:
            _check_scores(job, frame.columns)
    except JobError as exc:
        raise loaded.locate(exc) from None
    output = resolve_output(job.output.path, job.name, shard=shard)
    _check_writable(output, loaded)
    key_problem: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    if isinstance(job.provider, HttpProvider):
        base_url = job.provider.base_url
        try:
            api_key = resolve_api_key(job)
        except JobError as exc:
            if require_key:
                raise loaded.locate(exc) from None
            key_problem = str(loaded.locate(exc))
    else:
        api_key = resolve_api_key(job)
    try:
        prices = load_prices(job)
    except JobError as exc:
        raise loaded.locate(exc) from None
    return Prepared(
        loaded=loaded,
        plan=plan,
        output=output,
        api_key=api_key,
        base_url=base_url,
        prices=prices,
        key_problem=key_problem,
    )


MIN_FREE_BYTES = 50 * 1024**2


def _check_scores(job: Job, columns: list[str]) -> None:
    """Scores must find their columns, and judge rubrics must compile (``JobError``)."""
    from batchrun.judge import check_rubric
    from batchrun.scoring import check_expected_columns

    check_expected_columns(job.scores, columns)
    for spec in job.scores:
        if spec.grader == "judge":
            check_rubric(spec, columns)


def _check_writable(output: Path, loaded: LoadedJob) -> None:
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".batchrun-check-"):
            pass
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise JobError(
            loaded.where(
                f"output.path: cannot write to the folder {folder} "
                f"({exc.strerror or exc}); choose a writable folder"
            )
        ) from None
    if free < MIN_FREE_BYTES:
        raise JobError(
            loaded.where(
                f"output.path: only {free // 1024**2} MB free in {folder}; "
                f"make at least {MIN_FREE_BYTES // 1024**2} MB of room first"
            )
        )


async def execute(
    prepared: Prepared,
    options: RunOptions,
    make_progress: Callable[[int], Progress],
    notify: Callable[[str], None] = lambda message: None,
) -> RunReport:
    """Send every request not yet done and write the results; return what happened.

    Holds the output's lock for the whole run. SIGINT and SIGTERM stop new
    sends and give requests in flight ``options.grace_s`` to finish; a
    second signal stops at once. Results are flushed as parts while the run
    goes and compacted into the output at the end, whatever the ending.
    """
    run_id = new_run_id()
    lock = RunLock(prepared.output)
    lock.acquire(run_id)
    if lock.taken_over:
        notify(f"warning: took over a lock left by a run that is gone ({lock.taken_over})")
    try:
        report = await _execute_locked(prepared, options, make_progress, notify, run_id)
        finished = (
            report.outcome.fatal is None
            and report.signal is None
            and report.storage_error is None
            and report.budget_reached is None
        )
        if finished:
            await _judge(prepared, options, make_progress, notify, report)
        return report
    finally:
        lock.release()


async def _judge(
    prepared: Prepared,
    options: RunOptions,
    make_progress: Callable[[int], Progress],
    notify: Callable[[str], None],
    report: RunReport,
) -> None:
    """Run each judge score over the ok answers (as jobs of their own), then merge them."""
    job = prepared.loaded.job
    judges = [spec for spec in job.scores if spec.grader == "judge"]
    if not judges:
        return
    from batchrun.judge import judge_output, judge_plan, merge_judgements

    for spec in judges:
        plan = judge_plan(job, spec, prepared.output)
        if plan is None:
            continue
        judged = Prepared(
            loaded=LoadedJob(
                job=plan.job, path=prepared.loaded.path, sha256=prepared.loaded.sha256
            ),
            plan=plan,
            output=judge_output(prepared.output, spec),
            api_key=prepared.api_key,
            base_url=prepared.base_url,
            prices=prepared.prices,
        )
        judge_options = RunOptions(
            retry_errors=options.retry_errors, fresh=options.fresh, grace_s=options.grace_s
        )
        result = await execute(judged, judge_options, make_progress, notify)
        notify(
            f"judge {spec.name} ({spec.model}): {sum(result.by_status.values())} answers "
            f"graded this run, {result.total_rows} in all"
        )
        if result.signal is not None:
            report.signal = result.signal
            return
    merge_judgements(prepared.output, job.scores)


async def _execute_locked(
    prepared: Prepared,
    options: RunOptions,
    make_progress: Callable[[int], Progress],
    notify: Callable[[str], None],
    run_id: str,
) -> RunReport:
    job = prepared.loaded.job
    plan = prepared.plan
    output = prepared.output
    if options.fresh:
        kept = set_aside(output, plan.prompts)
        if kept is not None:
            notify(f"--fresh: the earlier results are kept as {kept}")
    skip = done_keys(output, retry_errors=options.retry_errors)
    pending = plan.count(skip=skip, shard=options.shard)
    sources = {
        model.name: plan.requests(skip=skip, shard=options.shard, models=[model])
        for model in plan.models
    }
    sink = ResultSink(
        output,
        run_id,
        job.name,
        flush_every=job.output.flush_every,
        flush_seconds=job.output.flush_seconds,
    )
    limiter = build_limiter(job)
    retry = RetryPolicy(
        max_retries=job.limits.max_retries,
        max_retry_time_s=job.limits.max_retry_time_s,
        base_delay_s=job.limits.backoff_base_s,
        max_delay_s=max(job.limits.backoff_max_s, job.limits.backoff_base_s),
    )
    storage_errors: list[str] = []
    signals: list[signal.Signals] = []
    unpriced = prepared.prices.unpriced(job.models)
    if unpriced:
        notify(f"warning: no price for {', '.join(unpriced)}: their cost_usd stays empty")
    price_of = {m.name: prepared.prices.price_of(m) for m in job.models}
    budget = job.limits.budget_usd
    spent = [0.0]
    budget_hit: list[str] = []
    progress = make_progress(pending)
    tally = RunTally()
    runner: Runner | None = None

    def record(result: Result) -> None:
        price = price_of.get(result.model)
        if price is not None and result.status == "ok":
            cost = cost_usd(
                price, result.prompt_tokens, result.completion_tokens, result.cached_tokens
            )
            if cost is not None:
                result = result._replace(cost_usd=cost)
                spent[0] += cost
                if budget is not None and spent[0] >= budget and not budget_hit:
                    budget_hit.append(f"the budget of ${budget:g} was reached (${spent[0]:.4f})")
                    if runner is not None:
                        runner.stop()
        progress.update(result)
        tally.add(result)
        try:
            sink.add(result)
        except OSError as exc:
            if not storage_errors:
                storage_errors.append(_storage_message(exc, output))
                if runner is not None:
                    runner.stop()

    outcome = RunOutcome()
    ticker = asyncio.create_task(
        _flush_every(
            sink,
            job.output.flush_seconds,
            record_error=(lambda exc: storage_errors.append(_storage_message(exc, output))),
        )
    )
    try:
        async with gateway_url(job) as base_url:
            from batchrun.client import GatewayClient

            headers = job.provider.headers if isinstance(job.provider, HttpProvider) else {}
            async with GatewayClient(
                base_url,
                prepared.api_key,
                timeout_s=job.limits.timeout_s,
                idle_timeout_s=job.limits.stream_idle_timeout_s,
                extra_headers=headers,
                max_connections=job.limits.concurrency,
            ) as client:
                if pending:
                    round_trip = await check_models(client, job, base_url, options, notify)
                    if round_trip is not None:
                        # The key is good. Gateways refuse a model without a channel or an
                        # empty balance before calling upstream, so a probe still out after a
                        # few list round trips is being answered: nobody need wait for it.
                        limiter.trust(max(PROBE_GRACE_MIN_S, PROBE_GRACE_FACTOR * round_trip))
                    await report_balance(client, prepared, notify)
                runner = Runner(client, record, limiter, retry=retry)
                outcome = await _run_until_signalled(
                    runner, sources, options.grace_s, signals, notify
                )
    finally:
        ticker.cancel()
        progress.close()
        try:
            sink.flush()
        except OSError as exc:
            storage_errors.append(_storage_message(exc, output))
        try:
            total_rows = compact(output, plan.prompts)
            if job.scores:
                from batchrun.scoring import score_file

                score_file(output, job.scores)
        except OSError as exc:
            storage_errors.append(_storage_message(exc, output))
            total_rows = -1
    models_summary = tally.rows()
    by_status = dict(tally.by_status)
    return RunReport(
        run_id=run_id,
        output=output,
        total_rows=total_rows,
        outcome=outcome,
        planned=plan.total,
        skipped=plan.total - pending,
        models_summary=models_summary,
        by_status=by_status,
        paces={name: scope.pace_per_minute for name, scope in limiter.models.items()},
        signal=signals[0] if signals else None,
        storage_error=storage_errors[0] if storage_errors else None,
        budget_reached=budget_hit[0] if budget_hit else None,
        spent_usd=spent[0],
    )


async def _run_until_signalled(
    runner: Runner,
    sources: dict[str, Iterator[Request]],
    grace_s: float,
    signals: list[signal.Signals],
    notify: Callable[[str], None],
) -> RunOutcome:
    """Run, stopping gracefully on the first SIGINT/SIGTERM and at once on the second."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(runner.run(sources))

    def on_signal(signum: signal.Signals) -> None:
        signals.append(signum)
        if len(signals) == 1:
            notify(
                f"stopping: no new requests; up to {grace_s:g} s for those in flight "
                "(press Ctrl-C again to stop at once)"
            )
            runner.stop()
            loop.call_later(grace_s, task.cancel)
        else:
            task.cancel()

    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (RuntimeError, ValueError, NotImplementedError):
            pass  # not the main thread: the caller handles interruption
    try:
        return await task
    except asyncio.CancelledError:
        if not signals:
            raise
        return runner.outcome
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _flush_every(
    sink: ResultSink, seconds: float, record_error: Callable[[OSError], None]
) -> None:
    """Write buffered results at least every ``seconds``, even when none arrive."""
    while True:
        await asyncio.sleep(seconds)
        if sink.due():
            try:
                sink.flush()
            except OSError as exc:
                record_error(exc)
                return


def _storage_message(exc: OSError, output: Path) -> str:
    reason = exc.strerror or str(exc)
    return (
        f"cannot write results beside {output}: {reason}; the run stopped and the results "
        "written so far are kept; make room and rerun to continue"
    )


def set_aside(output: Path, prompts: pl.DataFrame) -> Path | None:
    """For ``--fresh``: fold any parts into the output and move it aside; its new name."""
    if not output.exists() and not part_files(output):
        return None
    compact(output, prompts)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = output.with_name(f"{output.stem}.before-{stamp}{output.suffix}")
    output.replace(kept)
    return kept


async def fetch_models(client: GatewayClient) -> list[ModelInfo]:
    """The gateway's model list; ``CatalogError`` when it gives none."""
    status, payload = await client.get_json("models")
    if not isinstance(payload, dict):
        raise CatalogError(f"HTTP {status} from the models endpoint")
    models = parse_models(payload)
    if status != 200:
        raise CatalogError(f"HTTP {status} from the models endpoint")
    return models


async def fetch_balance(client: GatewayClient, access_token: str | None = None) -> Balance:
    """What is left on the key, from whichever billing endpoint the gateway has.

    With the account's ``access_token``, ``/api/user/self`` is asked instead.
    """
    if access_token is not None:
        _, user = await client.get_json("../api/user/self", headers={"Authorization": access_token})
        return parse_user_self(user)
    problems = []
    status, subscription = await client.get_json("dashboard/billing/subscription")
    if status == 200:
        _, usage = await client.get_json("dashboard/billing/usage")
        try:
            return parse_subscription(subscription, usage)
        except CatalogError as exc:
            problems.append(str(exc))
    status, token = await client.get_json("../api/usage/token/")
    if status == 200:
        try:
            return parse_token_usage(token)
        except CatalogError as exc:
            problems.append(str(exc))
    raise CatalogError("; ".join(problems) or "the gateway offers no balance endpoint")


async def check_models(
    client: GatewayClient,
    job: Job,
    base_url: str,
    options: RunOptions,
    notify: Callable[[str], None],
) -> float | None:
    """Before sending: every model of the job must be on the gateway's list.

    Returns the list's round trip in seconds when the gateway answered it
    (so the key was accepted), None when the list could not be had.
    """
    started = time.perf_counter()
    try:
        offered = {model.id for model in await fetch_models(client)}
    except (CatalogError, ConnectionFailure) as exc:
        notify(f"warning: could not check the model list at {base_url} ({exc}); sending anyway")
        return None
    round_trip = time.perf_counter() - started
    missing = [m.id for m in job.models if m.id not in offered]
    if not missing:
        return round_trip
    message = (
        f"model {missing[0]!r} is not offered by the gateway at {base_url} "
        f"({len(offered)} models are; `batchrun models --base-url {base_url}` lists them)"
    )
    if not options.model_check:
        notify(f"warning: {message}; sending anyway (--no-model-check)")
        return round_trip
    raise JobError(f"models: {message}; fix the id, or pass --no-model-check to send anyway")


async def report_balance(
    client: GatewayClient, prepared: Prepared, notify: Callable[[str], None]
) -> None:
    """Say what the job may cost against what is left on the key, where both are known."""
    high = estimated_cost(prepared)[1]
    if high is None:
        return
    try:
        balance = await fetch_balance(client)
    except (CatalogError, ConnectionFailure):
        return
    if balance.unlimited:
        notify(f"balance: unlimited; this job may cost up to ${high:,.4f}")
        return
    assert balance.remaining_usd is not None
    verdict = "" if balance.remaining_usd >= high else " (warning: it may not be enough)"
    notify(
        f"balance: ${balance.remaining_usd:,.4f} left; this job may cost up to ${high:,.4f}"
        f"{verdict}"
    )


def estimated_cost(prepared: Prepared) -> tuple[float | None, float | None]:
    """The job's cost if no output were written, and if every output ran to max_tokens.

    Models without a price are left out; None when no model has one, and the
    upper bound is None when some priced model has no max_tokens.
    """
    plan = prepared.plan
    per_model_input = plan.estimated_input_tokens() / max(len(plan.models), 1)
    requests_per_model = plan.rows * prepared.loaded.job.samples
    low = high = 0.0
    priced = uncapped = False
    for spec, model in zip(prepared.loaded.job.models, plan.models, strict=True):
        price = prepared.prices.price_of(spec)
        if price is None:
            continue
        priced = True
        uncapped = uncapped or not model.max_output_tokens
        low += per_model_input * price.input / PER_TOKENS
        high += (
            per_model_input * price.input
            + model.max_output_tokens * requests_per_model * price.output
        ) / PER_TOKENS
    if not priced:
        return None, None
    return low, None if uncapped else high


T2 = TypeVar("T2")


def query_gateway(
    job: Job | None,
    base_url: str | None,
    api_key: str | None,
    ask: Callable[[GatewayClient], Coroutine[Any, Any, T2]],
) -> T2:
    """Open a client on the job's gateway (or ``base_url``) and run one query with it."""
    from batchrun.client import GatewayClient

    async def go() -> T2:
        if job is not None:
            headers = job.provider.headers if isinstance(job.provider, HttpProvider) else {}
            async with (
                gateway_url(job) as url,
                GatewayClient(url, api_key, timeout_s=30, extra_headers=headers) as client,
            ):
                return await ask(client)
        assert base_url is not None
        async with GatewayClient(base_url, api_key, timeout_s=30) as client:
            return await ask(client)

    return run_async(go())


def record_manifest(prepared: Prepared, report: RunReport, exit_code: int) -> Path:
    """Write the run's manifest beside its output; its path."""
    fatal = report.outcome.fatal
    stopped = (
        f"refused: {fatal.message}"
        if fatal is not None
        else f"signal {report.signal}"
        if report.signal is not None
        else report.storage_error
    )
    entry = describe_run(
        run_id=report.run_id,
        job_name=prepared.loaded.job.name,
        job_path=prepared.loaded.path,
        job_sha256=prepared.loaded.sha256,
        output=report.output,
        started=report.outcome.started,
        finished=report.outcome.finished,
        models=report.models_summary,
        by_status=report.by_status,
        total_rows=report.total_rows,
        exit_code=exit_code,
        stopped=stopped,
    )
    return write_manifest(report.output, entry)


def build_limiter(job: Job) -> Limiter:
    """The run's limits: the key's, and each model's under it (never above the key's)."""
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
async def gateway_url(job: Job) -> AsyncIterator[str]:
    """The job's base URL, or that of a built-in gateway started for as long as it is used."""
    provider = job.provider
    if isinstance(provider, MockProvider):
        from batchrun.gateway import Gateway, GatewaySettings, serve

        mock = provider.mock
        settings = GatewaySettings(
            models=mock.models,
            latency_ms=mock.latency_ms,
            model_latency_ms=dict(mock.model_latency_ms),
            latency_sigma=mock.latency_sigma,
            accuracy=dict(mock.accuracy),
            stream_chunk_ms=mock.stream_chunk_ms,
            seed=mock.seed,
        )
        async with serve(Gateway(settings)) as url:
            yield url
    else:
        yield provider.base_url


def run_job(
    prepared: Prepared,
    options: RunOptions,
    make_progress: Callable[[int], Progress],
    notify: Callable[[str], None],
) -> RunReport:
    """Run ``execute`` in the one event loop of the process (uvloop where installed)."""
    return run_async(execute(prepared, options, make_progress, notify))


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion in a new event loop, uvloop's where installed."""
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    # What exists now (modules, the plan) lives for the whole run: keep it out of the
    # collector's scans, and collect the young generation less often. Each request makes
    # many short-lived objects and few cycles.
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 20_000), *thresholds[1:])
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coroutine)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
