"""OpenAI's Batch API: a JSONL file uploaded, a batch created on it, output and error files.

``POST /v1/files`` (``purpose=batch``), ``POST /v1/batches`` with
``input_file_id``, ``endpoint``, ``completion_window`` and batchrun's
submission id in ``metadata``; ``GET /v1/batches/{id}``; output and error
files from ``GET /v1/files/{id}/content``; ``GET /v1/batches`` to reconcile.
"""

from __future__ import annotations

import json

from batchrun.batch.api import (
    BatchState,
    Listed,
    Phase,
    provider_error,
    unsupported,
)
from batchrun.batch.lines import Chunk, openai_url
from batchrun.batch.transport import BatchHttp
from batchrun.formats.media import multipart
from batchrun.plan import PlannedModel
from batchrun.wire import JsonObject

COMPLETION_WINDOW = "24h"
SUBMISSION_KEY = "batchrun_submission"
_LIST_PAGES = 20
_PHASES: dict[str, Phase] = {
    "validating": "running",
    "in_progress": "running",
    "finalizing": "running",
    "cancelling": "running",
    "completed": "ended",
    "expired": "ended",
    "cancelled": "ended",
    "failed": "failed",
}


class OpenAIBatches:
    """The Batch API lifecycle on one base URL."""

    kind = "openai-batch"

    def __init__(self, http: BatchHttp) -> None:
        self.http = http

    async def listed(self) -> list[Listed]:
        """Recent batches with their metadata (a few pages of 100)."""
        found: list[Listed] = []
        after: str | None = None
        for _ in range(_LIST_PAGES):
            path = "batches?limit=100" + (f"&after={after}" if after else "")
            reply = await self.http.call("GET", path)
            if reply.status == 404:
                raise unsupported(self.http, "GET /v1/batches")
            page = reply.json()
            if reply.status != 200 or not isinstance(page, dict):
                raise provider_error(reply, "listing batches", self.http)
            data = [b for b in page.get("data") or [] if isinstance(b, dict)]
            found += [_listed(b) for b in data]
            if not page.get("has_more") or not data:
                break
            after = str(data[-1].get("id"))
        return found

    async def submit(self, chunk: Chunk, model: PlannedModel, submission: str) -> str:
        """Upload the lines, create the batch; its id."""
        form = multipart(
            {"purpose": "batch"},
            [("file", "batchrun.jsonl", "application/jsonl", chunk.jsonl())],
        )
        reply = await self.http.call("POST", "files", form=form)
        uploaded = reply.json()
        if reply.status != 200 or not isinstance(uploaded, dict) or "id" not in uploaded:
            raise provider_error(reply, "uploading the batch file", self.http)
        payload = {
            "input_file_id": uploaded["id"],
            "endpoint": openai_url(model),
            "completion_window": COMPLETION_WINDOW,
            "metadata": {SUBMISSION_KEY: submission, "batchrun_model": model.name[:500]},
        }
        reply = await self.http.call("POST", "batches", body=json.dumps(payload).encode())
        if reply.status == 404:
            raise unsupported(self.http, "POST /v1/batches")
        created = reply.json()
        if reply.status != 200 or not isinstance(created, dict) or "id" not in created:
            raise provider_error(reply, "creating the batch", self.http)
        return str(created["id"])

    async def state(self, remote_id: str) -> BatchState:
        """The batch's status, request counts, files and validation errors."""
        reply = await self.http.call("GET", f"batches/{remote_id}")
        if reply.status == 404:
            return BatchState("gone")
        batch = reply.json()
        if reply.status != 200 or not isinstance(batch, dict):
            raise provider_error(reply, f"reading batch {remote_id}", self.http)
        status = str(batch.get("status"))
        counts = batch.get("request_counts") or {}
        errors = (batch.get("errors") or {}).get("data") or []
        return BatchState(
            phase=_PHASES.get(status, "running"),
            how=status,
            counts={k: int(v) for k, v in counts.items() if isinstance(v, int)},
            results=[
                str(batch[name]) for name in ("output_file_id", "error_file_id") if batch.get(name)
            ],
            errors=[
                (e.get("line"), str(e.get("code") or ""), str(e.get("message") or ""))
                for e in errors
                if isinstance(e, dict)
            ],
            expires_at=batch.get("expires_at"),
        )

    async def fetch(self, ref: str) -> bytes | None:
        """A file's content; None when the provider has no such file."""
        reply = await self.http.call("GET", f"files/{ref}/content")
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise provider_error(reply, f"downloading file {ref}", self.http)
        return reply.body

    async def cancel(self, remote_id: str) -> None:
        """``POST /v1/batches/{id}/cancel``."""
        reply = await self.http.call("POST", f"batches/{remote_id}/cancel", body=b"{}")
        if reply.status not in (200, 404):
            raise provider_error(reply, f"cancelling batch {remote_id}", self.http)


def _listed(batch: JsonObject) -> Listed:
    metadata = batch.get("metadata") or {}
    counts = batch.get("request_counts") or {}
    return Listed(
        remote_id=str(batch.get("id")),
        submission=metadata.get(SUBMISSION_KEY) if isinstance(metadata, dict) else None,
        created_at=float(batch.get("created_at") or 0),
        total=int(counts.get("total") or 0),
    )
