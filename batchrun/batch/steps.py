"""Where batch mode enters a run: which models stay online, and the lane around the sends.

``batch_lane`` is what ``Run.send`` opens on the job's base URL: for a job
with batch-mode models it lists the provider's batches (a 404 stops the run
with one line, exit 2, before anything is sent), adopts or drops work a
killed run left, collects finished batches, submits what is neither done
nor pending, and says on leaving what was submitted and when to come back.
``wait_if_asked`` then stays (``--wait``, and always for ``provider: mock``,
whose gateway ends with the run) until every batch is collected;
``cancel_batches`` is ``batchrun cancel``.
A job without batch-mode models gets a lane that does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from batchrun.batch.mode import batch_models
from batchrun.config import Job, MockProvider
from batchrun.errors import ConnectionFailure, JobError, ServerError
from batchrun.plan import PlannedModel
from batchrun.remote_work import RemoteRecord, read_record
from batchrun.run_report import Ending
from batchrun.store import done_keys

if TYPE_CHECKING:
    from batchrun.batch.lane import BatchLane
    from batchrun.prepare import Prepared
    from batchrun.run import Run


def online_models(job: Job, models: list[PlannedModel]) -> list[PlannedModel]:
    """The models sent online (``JobError`` for a batch-mode model no batch API takes)."""
    batched = batch_models(job, models)
    return [model for model in models if model not in batched]


class RunLane:
    """The batch lane of one run, or nothing when the job has no batch-mode model."""

    def __init__(self, run: Run, lane: BatchLane | None) -> None:
        self.run = run
        self.lane = lane

    async def wait_if_asked(self) -> None:
        """With ``--wait`` or a mock provider (and a run not stopped), poll until all is in."""
        from batchrun.signals import run_until_signalled

        run, lane = self.run, self.lane
        if lane is None or run.ending is not Ending.FINISHED:
            return
        if not run.options.wait:
            if not isinstance(run.prepared.job.provider, MockProvider) or not lane.works():
                return
            run.ui.notify(
                "provider: mock: the built-in gateway lives only while this run does, "
                "so the run waits for its batches"
            )
        try:
            await run_until_signalled(
                lane.wait(run.ui),
                stop=lane.stop,
                grace_s=0.0,
                received=run.signals,
                notify=run.ui.notify,
                interrupted=lambda: None,
            )
        except JobError as exc:
            raise run.prepared.loaded.locate(exc) from None
        finally:
            run.flush()


@contextlib.asynccontextmanager
async def batch_lane(run: Run, base_url: str, record: RemoteRecord) -> AsyncIterator[RunLane]:
    """The run's batch lane on ``base_url``, its batches in ``record``: collected and
    submitted before the block runs."""
    from batchrun.batch.lane import BatchLane

    prepared = run.prepared
    batched = batch_models(prepared.job, prepared.plan.models)
    if not batched:
        yield RunLane(run, None)
        return
    lane = BatchLane(run, batched, run.ui.notify, record)
    async with lane.open(base_url, prepared.api_key):
        try:
            ready = await _start(run, lane)
            yield RunLane(run, lane if ready else None)
        finally:
            run.flush()
            run.awaited = lane.pending_keys()
            for line in lane.summary():
                run.ui.notify(line)


async def _start(run: Run, lane: BatchLane) -> bool:
    """Reconcile, collect and submit; False when the provider cannot be asked this run."""
    try:
        await lane.reconcile()
    except (ServerError, ConnectionFailure) as exc:
        run.ui.notify(f"batch models wait for the next run: cannot list batches: {exc}")
        return False
    except JobError as exc:
        raise run.prepared.loaded.locate(exc) from None
    try:
        await lane.collect()
        run.flush()
        if run.ending is Ending.FINISHED:  # not once the budget is reached
            await lane.submit(done_keys(run.output, retry_errors=run.options.retry_errors))
            for line in lane.submissions():
                run.ui.notify(line)
    except JobError as exc:
        raise run.prepared.loaded.locate(exc) from None
    run.shard_total -= len(lane.pending_keys() | lane.collected_keys)
    return True


async def cancel_batches(prepared: Prepared) -> tuple[list[str], int]:
    """Ask the provider to cancel every pending batch of ``prepared``'s output.

    Returns the batch ids asked, and the submissions not yet confirmed
    (left for the next run to reconcile). What the cancelled batches had
    answered is collected by the next run, like any ended batch.
    """
    from batchrun.batch.anthropic import AnthropicBatches
    from batchrun.batch.api import BatchApi
    from batchrun.batch.openai import OpenAIBatches
    from batchrun.batch.transport import BatchHttp
    from batchrun.config import HttpProvider
    from batchrun.endpoint import gateway_url

    job = prepared.job
    record = read_record(prepared.output)
    headers = job.provider.headers if isinstance(job.provider, HttpProvider) else {}
    asked: list[str] = []
    async with (
        gateway_url(job) as base_url,
        BatchHttp(base_url, prepared.api_key, extra_headers=headers) as http,
    ):
        apis: dict[str, BatchApi] = {
            "openai-batch": OpenAIBatches(http),
            "anthropic-batch": AnthropicBatches(http),
        }
        works = record.of(apis)
        for work in works:
            if work.remote_id is None:
                continue
            await apis[work.kind].cancel(work.remote_id)
            work.status = "cancelling"
            asked.append(work.remote_id)
        record.save()
    return asked, sum(1 for w in works if w.remote_id is None)
