"""Anthropic's Message Batches: ``custom_id`` + ``params`` per request, results from a URL.

``POST /v1/messages/batches`` with the requests; ``GET .../{id}`` for its
``processing_status`` and ``request_counts``; the answers as JSONL from its
``results_url``; ``GET /v1/messages/batches`` to reconcile (the API has no
metadata, so a batch is matched by its size and creation time).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from batchrun.batch.api import (
    BatchState,
    Listed,
    provider_error,
    unsupported,
)
from batchrun.batch.lines import Chunk
from batchrun.batch.transport import BatchHttp
from batchrun.errors import JobError
from batchrun.plan import PlannedModel
from batchrun.wire import JsonObject

ROUTE = "messages/batches"
_LIST_PAGES = 20


class AnthropicBatches:
    """The Message Batches lifecycle on one base URL."""

    kind = "anthropic-batch"

    def __init__(self, http: BatchHttp) -> None:
        self.http = http

    async def listed(self) -> list[Listed]:
        """Recent message batches (a few pages of 100)."""
        found: list[Listed] = []
        after: str | None = None
        for _ in range(_LIST_PAGES):
            path = f"{ROUTE}?limit=100" + (f"&after_id={after}" if after else "")
            reply = await self.http.call("GET", path)
            if reply.status == 404:
                raise unsupported(self.http, "GET /v1/messages/batches")
            page = reply.json()
            if reply.status != 200 or not isinstance(page, dict):
                raise provider_error(reply, "listing message batches", self.http)
            data = [b for b in page.get("data") or [] if isinstance(b, dict)]
            found += [_listed(b) for b in data]
            if not page.get("has_more") or not data:
                break
            after = str(page.get("last_id") or data[-1].get("id"))
        return found

    async def submit(self, chunk: Chunk, model: PlannedModel, submission: str) -> str:
        """Create the batch; its id. A 400 is the job's fault (``JobError``)."""
        reply = await self.http.call("POST", ROUTE, body=chunk.request_list())
        if reply.status == 404:
            raise unsupported(self.http, "POST /v1/messages/batches")
        created = reply.json()
        if reply.status == 400:
            error = (created or {}).get("error") if isinstance(created, dict) else None
            reason = error.get("message") if isinstance(error, dict) else None
            raise JobError(
                f"{model.name}: the provider refused the batch as invalid: "
                f"{reason or reply.snippet(self.http.secrets)}; fix the job's params",
                field=f"models[{model.index}]",
            )
        if reply.status != 200 or not isinstance(created, dict) or "id" not in created:
            raise provider_error(reply, "creating the message batch", self.http)
        return str(created["id"])

    async def state(self, remote_id: str) -> BatchState:
        """The batch's processing status, counts and results URL."""
        reply = await self.http.call("GET", f"{ROUTE}/{remote_id}")
        if reply.status == 404:
            return BatchState("gone")
        batch = reply.json()
        if reply.status != 200 or not isinstance(batch, dict):
            raise provider_error(reply, f"reading message batch {remote_id}", self.http)
        status = str(batch.get("processing_status"))
        counts = {k: int(v) for k, v in (batch.get("request_counts") or {}).items()}
        counts["total"] = sum(counts.values())
        url = batch.get("results_url")
        return BatchState(
            phase="ended" if status == "ended" else "running",
            how=status,
            counts=counts,
            results=[str(url)] if url else [],
            expires_at=_timestamp(batch.get("expires_at")),
        )

    async def fetch(self, ref: str) -> bytes | None:
        """The results JSONL at ``ref``; None when it is missing."""
        reply = await self.http.call("GET", ref)
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise provider_error(reply, "downloading batch results", self.http)
        return reply.body

    async def cancel(self, remote_id: str) -> None:
        """``POST /v1/messages/batches/{id}/cancel``."""
        reply = await self.http.call("POST", f"{ROUTE}/{remote_id}/cancel", body=b"{}")
        if reply.status not in (200, 404):
            raise provider_error(reply, f"cancelling message batch {remote_id}", self.http)


def _listed(batch: JsonObject) -> Listed:
    counts = batch.get("request_counts") or {}
    return Listed(
        remote_id=str(batch.get("id")),
        submission=None,
        created_at=_timestamp(batch.get("created_at")) or 0.0,
        total=sum(int(v) for v in counts.values() if isinstance(v, int)),
    )


def _timestamp(value: Any) -> float | None:
    """An RFC 3339 time (or epoch seconds) as epoch seconds."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
