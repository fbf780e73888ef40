"""The batch side of one run: reconcile, collect what finished, submit what is missing, wait.

``BatchLane`` is opened by ``Run.send`` on the job's base URL for the
batch-mode models. ``collect`` first lists the provider's batches (a 404
there stops the run with one line before anything is sent), adopts or
drops work a killed run left half-submitted, then polls every pending
batch and writes the rows of those that ended through the run's
``record``. ``submit`` sends, as new batches, the requests neither done nor
pending, each recorded before it is submitted. ``wait`` polls until nothing
is pending (``remote_poll.poll_until``). The batches are ``RemoteJob``s of
the output's one ``RemoteRecord``, which the run's video tasks share; the
lane reads and moves only its own kinds. Every result goes through the run,
so pricing, budget, progress and storage are the online ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Collection
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from batchrun.batch.anthropic import AnthropicBatches
from batchrun.batch.api import BatchApi, Listed
from batchrun.batch.collect import Collector
from batchrun.batch.lines import Chunk, split
from batchrun.batch.mode import BATCH_KINDS, Lifecycle, lifecycle_of
from batchrun.batch.openai import OpenAIBatches
from batchrun.batch.progress import CountsBar
from batchrun.batch.transport import BatchHttp
from batchrun.config import HttpProvider
from batchrun.errors import ConnectionFailure, JobError, ServerError
from batchrun.plan import PlannedModel
from batchrun.record import Result
from batchrun.remote_poll import Backoff, poll_until
from batchrun.remote_work import RemoteJob, RemoteRecord

if TYPE_CHECKING:
    from batchrun.prepare import Prepared
    from batchrun.run import RunOptions

POLL = Backoff(first_s=0.2, most_s=30.0, growth=1.5)
# A killed run's submission is matched by size to an Anthropic batch created this close to it.
ADOPT_WINDOW_S = 600.0


class Host(Protocol):
    """What the lane needs of the run it belongs to."""

    prepared: Prepared
    options: RunOptions

    def record(self, result: Result) -> None:
        """Take one finished request."""

    def flush(self) -> None:
        """Write buffered results as a part."""


class BatchLane:
    """Pending batches of one output, and the lifecycle steps that move them on."""

    def __init__(
        self,
        host: Host,
        models: list[PlannedModel],
        notify: Callable[[str], None],
        record: RemoteRecord,
    ) -> None:
        self.host = host
        self.models = models
        self.notify = notify
        self.record = record
        self.apis: dict[Lifecycle, BatchApi] = {}
        self.collected = 0
        self.collected_keys: set[str] = set()
        self.submitted: list[RemoteJob] = []
        self._stopping = False

    @contextlib.asynccontextmanager
    async def open(self, base_url: str, api_key: str | None) -> AsyncIterator[BatchLane]:
        """The lane with a session on ``base_url``, for as long as the block runs."""
        job = self.host.prepared.job
        headers = job.provider.headers if isinstance(job.provider, HttpProvider) else {}
        async with BatchHttp(
            base_url, api_key, extra_headers=headers, timeout_s=job.limits.timeout_s
        ) as http:
            self.apis = {"openai": OpenAIBatches(http), "anthropic": AnthropicBatches(http)}
            yield self

    def stop(self) -> None:
        """Submit nothing more and stop waiting."""
        self._stopping = True

    def works(self) -> list[RemoteJob]:
        """The batches not yet collected (the record's jobs of the batch kinds)."""
        return self.record.of(BATCH_KINDS)

    def pending_keys(self) -> set[str]:
        """Request keys answered by a batch not yet collected."""
        return self.record.keys(BATCH_KINDS)

    def _used(self) -> list[Lifecycle]:
        wanted = {lifecycle_of(m) for m in self.models}
        wanted |= {BATCH_KINDS[w.kind] for w in self.works()}
        return sorted(wanted)

    async def reconcile(self) -> None:
        """List the provider's batches; adopt or drop work a killed run left unconfirmed."""
        for lifecycle in self._used():
            listed = await self.apis[lifecycle].listed()
            known = {w.remote_id for w in self.works() if w.remote_id}
            for work in [w for w in self.works() if w.remote_id is None]:
                if BATCH_KINDS[work.kind] != lifecycle:
                    continue
                found = _match(work, [b for b in listed if b.remote_id not in known])
                if found is None:
                    self.notify(
                        f"a submission of {len(work.keys):,} {work.model} requests was cut off "
                        "before the provider took it; they are submitted again"
                    )
                    self.record.remove(work)
                    continue
                self.record.submitted(work, found.remote_id, at=found.created_at)
                known.add(found.remote_id)
                self.notify(f"batch {found.remote_id} submitted by a run that was cut off: kept")

    async def collect(self) -> None:
        """Poll every pending batch; write the rows of those that ended (``JobError`` at the end
        if the provider refused one as the job's fault)."""
        collector = Collector(self.host, self.record, self.notify, self.collected_keys)
        for work in self.works():
            if work.remote_id is None:
                continue
            api = self.apis[BATCH_KINDS[work.kind]]
            try:
                state = await api.state(work.remote_id)
                self.collected += await collector.take(api, work, state)
            except (ServerError, ConnectionFailure) as exc:
                self.notify(f"batch {work.remote_id}: {exc}; tried again on the next poll")
        if collector.faults:
            more = len(collector.faults) - 1
            raise JobError(collector.faults[0] + (f" (and {more} more)" if more else ""))

    async def submit(self, done: Collection[str]) -> None:
        """Submit every request of the batch-mode models neither in ``done`` nor pending."""
        prepared = self.host.prepared
        skip = set(done) | self.pending_keys()
        shard = self.host.options.shard
        for model in self.models:
            lifecycle = lifecycle_of(model)
            requests = prepared.plan.requests(skip=skip, shard=shard, models=[model])
            try:
                for chunk in split(lifecycle, requests, prepared.job.limits.batch_size):
                    if self._stopping:
                        return
                    await self._submit_one(self.apis[lifecycle], chunk, model)
            except ValueError as exc:
                raise JobError(str(exc), field=f"models[{model.index}]") from None
            except (ServerError, ConnectionFailure) as exc:
                self.notify(f"{model.name}: submitting stopped: {exc}; the next run goes on")
                return

    async def _submit_one(self, api: BatchApi, chunk: Chunk, model: PlannedModel) -> None:
        work = RemoteJob.new(api.kind, model.name, chunk.keys)
        self.record.add(work)  # durable before the provider hears of it
        try:
            remote_id = await api.submit(chunk, model, work.submission)
        except JobError:  # refused as invalid: never submitted
            self.record.remove(work)
            raise
        work.counts = {"total": len(chunk.keys)}
        self.record.submitted(work, remote_id)
        self.submitted.append(work)

    def _settled(self) -> bool:
        return not self.works() or self._stopping

    async def wait(self, ui: object) -> None:
        """Poll with ``POLL``'s backoff until every pending batch is collected (or the run
        is stopped)."""
        total = sum(len(w.keys) for w in self.works())
        bar = CountsBar(total, ui, self.notify)
        start = self.collected
        outer, self.notify = self.notify, bar.say

        async def poll() -> bool | None:
            await self.collect()
            running = sum(w.done for w in self.works())
            kinds = _count_words(self.works())
            bar.show(self.collected - start + running, kinds or "all collected")
            return self._settled() or None

        try:
            if not self._settled():
                await poll_until(poll, POLL, wait_first=True)
        finally:
            bar.close()
            self.notify = outer

    def submissions(self) -> list[str]:
        """What this run submitted, per model."""
        lines = []
        for model in self.models:
            mine = [w for w in self.submitted if w.model == model.name]
            if mine:
                ids = ", ".join(str(w.remote_id) for w in mine)
                count = sum(len(w.keys) for w in mine)
                lines.append(
                    f"{model.name}: submitted {count:,} requests in {len(mine)} batch(es) ({ids})"
                )
        return lines

    def summary(self) -> list[str]:
        """What this run collected, what is still pending and when to come back."""
        lines = []
        job_file = self.host.prepared.loaded.path
        if self.collected:
            lines.append(f"collected {self.collected:,} batch answers")
        works = self.works()
        if works:
            oldest = min(w.submitted_at or w.prepared_at for w in works)
            by = datetime.fromtimestamp(oldest + 24 * 3600, UTC).strftime("%Y-%m-%d %H:%M UTC")
            lines.append(
                f"{sum(len(w.keys) for w in works):,} requests pending in {len(works)} batch(es), "
                f"answered by {by} at the latest; run `batchrun run {job_file}` again "
                "(from cron, say every 30 minutes) to collect them, or add --wait"
            )
        return lines


def _match(work: RemoteJob, listed: list[Listed]) -> Listed | None:
    """The provider's batch that ``work`` became: by submission id, else by size and time."""
    for batch in listed:
        if batch.submission is not None and batch.submission == work.submission:
            return batch
    if work.kind != "anthropic-batch":
        return None
    close = [
        b
        for b in listed
        if b.submission is None
        and b.total == len(work.keys)
        and work.prepared_at - 5 <= b.created_at <= work.prepared_at + ADOPT_WINDOW_S
    ]
    return min(close, key=lambda b: b.created_at) if close else None


def _count_words(works: list[RemoteJob]) -> str:
    totals: dict[str, int] = {}
    for work in works:
        for name, count in work.counts.items():
            if name != "total" and count:
                totals[name] = totals.get(name, 0) + count
    return ", ".join(f"{count:,} {name}" for name, count in sorted(totals.items()))
