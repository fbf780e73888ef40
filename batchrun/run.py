"""One run of a prepared job: its state, from the first request to the manifest.

A ``Run`` owns everything that changes while a job runs: the sink, the
spend against the budget, the tally, the progress, how sending ended. Every
result passes through ``Run.record`` (price, budget, progress, tally,
storage); ``Run.finish`` flushes, compacts (applying per-row scores and
joining judge scores on that one pass) and writes the manifest, and returns
the ``RunReport`` that knows how the run ended. ``execute`` runs a job and
its judges under the output's lock.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from batchrun.checkpoint_upload import checkpoint_uploads
from batchrun.compaction import compact
from batchrun.endpoint import open_client
from batchrun.errors import JobError
from batchrun.finishing import file_metadata, output_finisher, score_means
from batchrun.limits import Limiter
from batchrun.lock import RunLock
from batchrun.manifest import manifest_path, write_manifest
from batchrun.media_sender import media_sender, settle_tasks
from batchrun.plan import Request
from batchrun.prepare import Prepared
from batchrun.pricing import batch_price, row_cost
from batchrun.progress import Progress
from batchrun.queries import check_models, report_balance
from batchrun.remote import publish, remote_output
from batchrun.remote_work import RemoteRecord, read_record
from batchrun.run_limits import build_limiter, connect_shared, retry_policy
from batchrun.run_report import Ending, MaxFailures, OutputState, RunReport
from batchrun.runner import Runner, RunOutcome
from batchrun.sink import TICK_SECONDS, ResultSink
from batchrun.store import Result, done_keys, failure_counts, new_run_id
from batchrun.summary import RunTally
from batchrun.supersede import record_fingerprint, set_aside_superseded, sidecar_path

if TYPE_CHECKING:
    from batchrun.client import GatewayClient

# Once the model list has answered (the key is good), a probe unanswered for this many
# list round trips, and at least the minimum, holds the other requests back no longer.
PROBE_GRACE_FACTOR = 3.0
PROBE_GRACE_MIN_S = 0.05
NO_LIST_PROBE_GRACE_S = 5.0


class Ui(Protocol):
    """Where a run shows itself: messages, and a progress display per phase."""

    def notify(self, message: str) -> None:
        """Show one line to the user."""

    def progress(self, total: int, label: str) -> Progress:
        """A progress display for ``total`` requests of the phase ``label``."""

    def begin(self, run_id: str, description: str) -> None:
        """A run with this id starts."""


@dataclass
class RunOptions:
    """What the command line adds to a job."""

    retry_errors: bool = False
    shard: tuple[int, int] | None = None
    fresh: bool = False
    grace_s: float = 10.0
    model_check: bool = True
    max_failures: MaxFailures = field(default_factory=MaxFailures)
    wait: bool = False  # batch mode: stay until every batch is collected


class Run:
    """The state of one run of one prepared job."""

    def __init__(
        self, prepared: Prepared, options: RunOptions, ui: Ui, run_id: str, label: str = "run"
    ) -> None:
        self.prepared = prepared
        self.options = options
        self.ui = ui
        self.run_id = run_id
        self.label = label
        job = prepared.job
        self.sink = ResultSink(
            prepared.output,
            run_id,
            job.name,
            flush_every=job.output.flush_every,
            flush_seconds=job.output.flush_seconds,
            fsync_seconds=job.output.fsync_seconds,
        )
        self.tally = RunTally()
        self.outcome = RunOutcome()
        self.signals: list[signal.Signals] = []
        self.storage_error: str | None = None
        self.budget_reached: str | None = None
        self.spent_usd = 0.0
        self.pending = 0
        self.todo: dict[str, int] = {}
        self.awaited: set[str] = set()  # keys submitted in batches not yet collected
        self.shard_total = prepared.plan.total
        self._price_of = {m.name: prepared.prices.price_of(m) for m in job.models}
        self._batch_price_of = {name: batch_price(p) for name, p in self._price_of.items()}
        self.paces: dict[str, float | None] = {}
        self.shared_wait_s = 0.0  # sending waited this long for an unreachable limits.share
        self._runner: Runner | None = None
        self._progress: Progress | None = None

    @property
    def output(self) -> Path:
        """The results file this run writes."""
        return self.prepared.output

    @property
    def ending(self) -> Ending:
        """Why sending ended (so far)."""
        if self.outcome.fatal is not None:
            return Ending.REFUSED
        if self.signals:
            return Ending.INTERRUPTED
        if self.storage_error is not None:
            return Ending.STORAGE
        if self.budget_reached is not None:
            return Ending.BUDGET
        return Ending.FINISHED

    def record(self, result: Result) -> None:
        """Take one finished request: price it, count it, show it, keep it."""
        if result.mode is None:
            result = result._replace(mode="online")
        prices = self._batch_price_of if result.mode == "batch" else self._price_of
        price = prices.get(result.model)
        if price is not None and result.status == "ok":
            cost = row_cost(price, result)
            if cost is not None:
                result = result._replace(cost_usd=cost)
                self._spend(cost)
        if self._progress is not None:
            self._progress.update(result)
        self.tally.add(result)
        try:
            self.sink.add(result)
        except OSError as exc:
            self.storage_failed(exc)

    def _spend(self, cost: float) -> None:
        self.spent_usd += cost
        budget = self.prepared.job.limits.budget_usd
        if budget is not None and self.spent_usd >= budget and self.budget_reached is None:
            self.budget_reached = f"the budget of ${budget:g} was reached (${self.spent_usd:.4f})"
            self.stop()

    def storage_failed(self, exc: OSError) -> None:
        """Any write failed (journal, part, compaction, manifest): note the first, stop sending."""
        if self.storage_error is None:
            reason = exc.strerror or str(exc)
            where = f" ({exc.filename})" if exc.filename else ""
            self.storage_error = (
                f"cannot write results beside {self.output}: {reason}{where}; the run stopped "
                "and the results written so far are kept; make room and rerun to continue"
            )
        self.stop()

    def stop(self) -> None:
        """Send nothing new; requests in flight finish."""
        if self._runner is not None:
            self._runner.stop()

    async def send(self) -> None:
        """Send every request not yet done, until done, stopped or refused.

        Batch-mode models go through their provider's batch API instead
        (``batch.steps.batch_lane``), before the online requests; with
        ``options.wait`` the run then stays until every batch is collected.
        """
        from batchrun.batch.steps import batch_lane, online_models

        job = self.prepared.job
        plan = self.prepared.plan
        online = online_models(job, plan.models)
        skip = self._resume()
        if skip is None:
            return
        remote_work = self._remote_work()
        shard = self.options.shard
        self.todo = {
            model.name: plan.count(skip=skip, shard=shard, models=[model]) for model in online
        }
        self.pending = sum(self.todo.values())
        self.shard_total = plan.count(shard=shard) if shard is not None else plan.total
        sources = {
            model.name: plan.requests(skip=skip, shard=shard, models=[model]) for model in online
        }
        unpriced = self.prepared.prices.unpriced(job.models)
        if unpriced and self.pending:
            self.ui.notify(
                f"warning: no price for {', '.join(unpriced)}: their cost_usd stays empty"
            )
        shared = await connect_shared(self.prepared, self.pending)
        limiter = build_limiter(job, shared)
        self.paces = {}
        self._progress = self.ui.progress(self.pending, self.label)
        ticker = asyncio.create_task(self._flush_timer())
        try:
            async with (
                open_client(job, self.prepared.api_key) as (base_url, client),
                batch_lane(self, base_url, remote_work) as lane,
            ):
                if self.pending:
                    await self._before_sending(client, base_url, limiter)
                secrets = [self.prepared.api_key] if self.prepared.api_key else []
                sender = media_sender(client, self.output, remote_work, plan.models, skip, secrets)
                self._runner = Runner(sender, self.record, limiter, retry=retry_policy(job))
                if self.storage_error is not None:
                    self._runner.stop()
                self.outcome = await self._run(self._runner, sources)
                await lane.wait_if_asked()
        finally:
            ticker.cancel()
            self._progress.close()
            self.flush()
            settle_tasks(remote_work, self.output)
            if shared is not None:
                self.shared_wait_s = await shared.close()
        self.paces = {name: scope.pace_per_minute for name, scope in limiter.models.items()}

    def _remote_work(self) -> RemoteRecord:
        """The output's one record of batches and video tasks (unreadable: a located JobError)."""
        try:
            return read_record(self.output)
        except JobError as exc:
            raise self.prepared.loaded.locate(exc) from None

    def _resume(self) -> Container[str] | None:
        """Heal the output's files (set them aside for --fresh); the keys done, None if failed."""
        from batchrun.heal import ready_output

        try:
            for line in ready_output(self.output, self.prepared.plan.table, self.options.fresh):
                self.ui.notify(line)
            return done_keys(self.output, retry_errors=self.options.retry_errors)
        except OSError as exc:
            self.storage_failed(exc)
            return None

    async def _before_sending(self, client: GatewayClient, base_url: str, limiter: Limiter) -> None:
        from batchrun.estimate import estimated_cost

        try:
            round_trip = await check_models(
                client,
                self.prepared.job,
                base_url,
                self.options.model_check,
                self.ui.notify,
                self.prepared.loaded.path,
            )
        except JobError as exc:
            raise self.prepared.loaded.locate(exc) from None
        if round_trip is not None:
            # The key is good. Gateways refuse a model without a channel or an empty
            # balance before calling upstream, so a probe still out after a few list
            # round trips is being answered: nobody need wait for it.
            limiter.trust(max(PROBE_GRACE_MIN_S, PROBE_GRACE_FACTOR * round_trip))
        else:
            # No list to prove the key: refusals still come back quickly, so a probe out
            # for half a timeout (at most a few seconds) is being answered, or never will
            # be. Either way the others need not wait for it one at a time.
            limiter.trust(min(NO_LIST_PROBE_GRACE_S, self.prepared.job.limits.timeout_s / 2))
        todo = dict(self.todo)
        await report_balance(client, estimated_cost(self.prepared, todo)[1], self.ui.notify)

    async def _run(self, runner: Runner, sources: dict[str, Iterator[Request]]) -> RunOutcome:
        from batchrun.signals import run_until_signalled

        return await run_until_signalled(
            runner.run(sources),
            stop=runner.stop,
            grace_s=self.options.grace_s,
            received=self.signals,
            notify=self.ui.notify,
            interrupted=lambda: runner.outcome,
        )

    async def _flush_timer(self) -> None:
        """Every tick, hand waiting results to the OS (a part and an fsync when due)."""
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.sink.tick()
            except OSError as exc:
                self.storage_failed(exc)
                return

    def flush(self) -> None:
        """Write every buffered result as a part (judges read the parts before compaction)."""
        try:
            self.sink.flush()
        except OSError as exc:
            self.storage_failed(exc)
        finally:
            self.sink.close()

    def finish(self, judged: dict[str, Path] | None = None) -> RunReport:
        """Flush, compact into the output once (scores applied); the run's report."""
        self.flush()
        models = self._model_rows()  # before compaction, which then has the latencies' room
        self.tally.forget_latencies()
        job = self.prepared.job
        plan = self.prepared.plan
        state = OutputState()
        dropped: set[str] = set()
        try:
            dropped = set_aside_superseded(self.output, plan)
            finisher = output_finisher(job.scores, judged, dropped)
            compact(self.output, plan.table, finisher, file_metadata(job.scores))
            record_fingerprint(self.output, plan)
            state = OutputState(*failure_counts(self.output, self.awaited))
        except OSError as exc:
            self.storage_failed(exc)
        if dropped:
            self.ui.notify(
                f"{len(dropped):,} rows made with settings the job no longer holds were "
                f"moved to {sidecar_path(self.output)}"
            )
        return RunReport(
            run_id=self.run_id,
            job_name=job.name,
            job_file=self.prepared.loaded.path,
            job_sha256=self.prepared.loaded.sha256,
            output=self.output,
            planned=self.prepared.plan.total,
            skipped=self.shard_total - self.pending,
            started=self.outcome.started,
            finished=self.outcome.finished,
            ending=self.ending,
            tolerance=self.options.max_failures,
            state=state,
            by_status=dict(self.tally.by_status),
            models=models,
            reason=self._reason(),
            signal=self.signals[0] if self.signals else None,
            errors={
                kind: {"count": e.count, "model": e.model, "example": e.example}
                for kind, e in self.tally.errors.items()
            },
            scores=score_means(self.output) if state.rows else {},
            share_wait_s=round(self.shared_wait_s, 3) if job.limits.share else None,
        )

    def save_manifest(self, report: RunReport) -> None:
        """Write the manifest; a failure ends the run as a storage error (exit 1)."""
        try:
            write_manifest(report)
        except OSError as exc:
            self.storage_failed(OSError(exc.errno, exc.strerror, str(manifest_path(self.output))))
            if report.ending in (Ending.FINISHED, Ending.BUDGET):
                report.ending, report.reason = Ending.STORAGE, self.storage_error

    def _reason(self) -> str | None:
        if self.outcome.fatal is not None:
            return self.outcome.fatal.message
        return self.storage_error or self.budget_reached

    def _model_rows(self) -> list[dict[str, object]]:
        rows = self.tally.rows()
        for row in rows:
            state = self.outcome.models.get(str(row["model"]))
            row["rate_limited"] = state.rate_limited if state else 0
            row["stopped"] = state.stopped_reason if state else None
            row["pace_per_min"] = self.paces.get(str(row["model"]))
            # Which limit held the model back (declared, gateway, 429s, concurrency), and its use.
            limiter = self._runner.limiter if self._runner else None
            held = limiter.held_back(str(row["model"])) if limiter and state else (None, None)
            row["held_by"], row["limit_used"] = held
        return rows


async def execute(prepared: Prepared, options: RunOptions, ui: Ui) -> RunReport:
    """Run the job, then its judges, under the output's lock; the report of the whole run.

    SIGINT and SIGTERM stop new sends and give requests in flight
    ``options.grace_s`` to finish; a second signal stops at once. The output
    is written once, at the end, whatever the ending; an object-storage
    output is also uploaded at checkpoints while the job sends.
    """
    run_id = new_run_id()
    ui.begin(run_id, f"job {prepared.job.name} ({prepared.loaded.path}), output {prepared.output}")
    lock = RunLock(prepared.output)
    lock.acquire(run_id)
    if lock.taken_over:
        ui.notify(f"warning: took over a lock left by a run that is gone ({lock.taken_over})")
    remote = remote_output(prepared)
    try:
        remote.open(run_id, ui.notify)
        run = Run(prepared, options, ui, run_id)
        async with checkpoint_uploads(prepared, run_id, ui.notify):
            await run.send()
        judges: list[RunReport] = []
        judged: dict[str, Path] = {}
        if run.ending is Ending.FINISHED:
            from batchrun.judging import run_judges

            await run_judges(run, judges, judged)
        report = run.finish(judged)
        report.judges = judges
        if any(j.ending is Ending.INTERRUPTED for j in judges) and report.signal is None:
            report.signal = next(j.signal for j in judges if j.signal is not None)
            report.ending = Ending.INTERRUPTED
        run.save_manifest(report)
        publish(remote, report, ui.notify)
        return report
    finally:
        remote.close()
        lock.release()
