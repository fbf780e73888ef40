"""Taking in one polled batch: counts while it runs, rows once it ended, faults by class.

``Collector.take`` promises that every request of an ended batch either
gets a row (ok, a classified line error, ``batch_expired``,
``batch_failed``) or goes back to be submitted again (cancelled, or lost
from a file that stayed cut or missing), and that the pending record
forgets the batch only after its rows are written. A results file that is
cut or missing is fetched again on the next poll, up to ``MAX_FETCHES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from batchrun.batch.api import BatchApi, BatchState
from batchrun.batch.results import EXPIRED, FAILED, RowMaker, read_lines
from batchrun.record import Request, Result
from batchrun.remote_work import RemoteJob, RemoteRecord
from batchrun.wire import JsonObject

if TYPE_CHECKING:
    from batchrun.batch.lane import Host

MAX_FETCHES = 3
# Validation failures that are the provider's limits, not the job's: resubmitted later.
NOT_THE_JOBS_FAULT = frozenset(
    {"token_limit_exceeded", "rate_limit_exceeded", "insufficient_quota", "quota_exceeded"}
)


class Collector:
    """Moves polled batches on: counts, rows, and the faults that are the job's."""

    def __init__(
        self,
        host: Host,
        record: RemoteRecord,
        notify: Callable[[str], None],
        collected: set[str],
    ) -> None:
        self.host = host
        self.collected = collected
        self.record = record
        self.notify = notify
        self.faults: list[str] = []

    async def take(self, api: BatchApi, work: RemoteJob, state: BatchState) -> int:
        """Act on ``state``; the rows written."""
        if state.phase == "running":
            if state.counts != work.counts:
                work.counts = state.counts
                self.record.save()
            return 0
        if state.phase == "gone":
            self.notify(
                f"batch {work.remote_id} is unknown to the provider (a gateway restarted?); "
                f"its {len(work.keys):,} requests are submitted again"
            )
            self.record.remove(work)
            return 0
        requests = self._requests(work)
        if state.phase == "failed":
            return self._failed(work, state, requests)
        return await self._ended(api, work, state, requests)

    def _requests(self, work: RemoteJob) -> dict[str, Request]:
        plan = self.host.prepared.plan
        wanted = set(work.keys)
        models = [m for m in plan.models if m.name == work.model]
        return {r.key: r for r in plan.requests(models=models) if r.key in wanted}

    def _maker(self, work: RemoteJob) -> RowMaker:
        secrets = [self.host.prepared.api_key] if self.host.prepared.api_key else []
        return RowMaker(str(work.remote_id), work.submitted_at or work.prepared_at, secrets)

    def _failed(self, work: RemoteJob, state: BatchState, requests: dict[str, Request]) -> int:
        """A batch refused as a whole: a ``batch_failed`` row per request, the reason named."""
        line, code, reason = state.errors[0] if state.errors else (None, "", "no reason given")
        where = ""
        if isinstance(line, int) and 0 < line <= len(work.keys):
            request = requests.get(work.keys[line - 1])
            named = f" (prompt {request.prompt_id})" if request is not None else ""
            where = f" line {line}{named}:"
        message = f"batch {work.remote_id} of {work.model} failed validation:{where} {reason}"
        maker = self._maker(work)
        rows = [maker.failed(r, FAILED, message, None) for r in requests.values()]
        self._write(work, rows)
        if code not in NOT_THE_JOBS_FAULT:
            self.faults.append(message + "; fix the job and rerun")
        else:
            self.notify(message + "; its requests are submitted again")
        return len(rows)

    async def _ended(
        self, api: BatchApi, work: RemoteJob, state: BatchState, requests: dict[str, Request]
    ) -> int:
        lines: list[JsonObject] = []
        whole = True
        for ref in state.results:
            data = await api.fetch(ref)
            found, complete = read_lines(data) if data is not None else ([], False)
            lines += found
            whole = whole and complete
        answered = {line["custom_id"] for line in lines}
        expired_batch = state.how in ("expired", "cancelled")
        if not expired_batch and not set(work.keys) <= answered:
            whole = False
        if not whole:
            fetches = int(work.detail.get("fetches", 0)) + 1
            work.detail["fetches"] = fetches
            if fetches < MAX_FETCHES:
                self.record.save()
                self.notify(
                    f"batch {work.remote_id}: the results file is cut or missing "
                    f"({len(answered):,} of {len(work.keys):,} answers); fetched again later"
                )
                return 0
            self.notify(
                f"batch {work.remote_id}: the results stayed incomplete after {fetches} tries; "
                f"{len(work.keys) - len(answered):,} unanswered requests are submitted again"
            )
        rows = self._rows(api, work, lines, requests)
        if state.how == "expired":
            maker = self._maker(work)
            message = "the batch expired before this request ran"
            rows += [
                maker.failed(r, EXPIRED, message, None)
                for key, r in requests.items()
                if key not in answered
            ]
        self._write(work, rows)
        return len(rows)

    def _rows(
        self,
        api: BatchApi,
        work: RemoteJob,
        lines: list[JsonObject],
        requests: dict[str, Request],
    ) -> list[Result]:
        maker = self._maker(work)
        read = maker.openai if api.kind == "openai-batch" else maker.anthropic
        rows: dict[str, Result] = {}
        for line in lines:
            request = requests.get(line["custom_id"])
            if request is None:
                continue  # a request the job no longer holds
            row = read(line, request)
            if row is not None and (row.status == "ok" or request.key not in rows):
                rows[request.key] = row
        return list(rows.values())

    def _write(self, work: RemoteJob, rows: list[Result]) -> None:
        """Record the rows, write them, and only then forget the batch."""
        for row in rows:
            self.host.record(row)
            self.collected.add(row.request_key)
        self.host.flush()
        self.record.remove(work)
