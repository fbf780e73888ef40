"""The batch routes of the built-in gateway: OpenAI's Batch API and Anthropic's Message Batches.

Served only when ``GatewaySettings.batches`` is set (otherwise
``/v1/batches`` answers 404 as one-api/new-api do). OpenAI: ``POST
/v1/files`` (multipart, ``purpose=batch``), ``GET /v1/files/{id}/content``,
``POST /v1/batches``, ``GET /v1/batches[/{id}]``, ``POST
/v1/batches/{id}/cancel``. Anthropic: ``POST /v1/messages/batches``, ``GET
/v1/messages/batches[/{id}]``, ``GET .../{id}/results``, ``POST
.../{id}/cancel``. Input is validated as the providers do (custom ids,
endpoint, duplicates); ``/_sim/batches`` lists what was created.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from batchrun.gateway.batches import ENDPOINT_FORMATS, BatchStore, HeldBatch
from batchrun.wire import JsonObject

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
WINDOW_S = 24 * 3600


def _error(status: int, message: str, anthropic: bool = False) -> web.Response:
    if anthropic:
        body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    else:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return web.json_response(body, status=status)


def _iso(stamp: float | None) -> str | None:
    return datetime.fromtimestamp(stamp, UTC).isoformat().replace("+00:00", "Z") if stamp else None


def _jsonl(items: list[JsonObject]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


class BatchRoutes:
    """Handlers of both batch APIs over one ``BatchStore``."""

    def __init__(self, store: BatchStore) -> None:
        self.store = store

    def table(self) -> list[tuple[str, str, Any]]:
        """(method, path, handler) of every batch route."""
        return [
            ("POST", "/v1/files", self.upload),
            ("GET", "/v1/files/{id}/content", self.content),
            ("POST", "/v1/batches", self.create),
            ("GET", "/v1/batches", self.list_batches),
            ("GET", "/v1/batches/{id}", self.show),
            ("POST", "/v1/batches/{id}/cancel", self.cancel),
            ("POST", "/v1/messages/batches", self.create_messages),
            ("GET", "/v1/messages/batches", self.list_messages),
            ("GET", "/v1/messages/batches/{id}", self.show_messages),
            ("GET", "/v1/messages/batches/{id}/results", self.results),
            ("POST", "/v1/messages/batches/{id}/cancel", self.cancel_messages),
        ]

    async def sim(self, request: web.Request) -> web.Response:
        """``/_sim/batches``: every batch created, with its size."""
        held = [
            {"id": b.id, "flavour": b.flavour, "lines": len(b.lines), "metadata": b.metadata}
            for b in self.store.batches.values()
        ]
        return web.json_response({"created": len(self.store.created), "batches": held})

    # OpenAI

    async def upload(self, request: web.Request) -> web.Response:
        """``POST /v1/files``: keep a batch input file."""
        form = await request.post()
        upload = form.get("file")
        if form.get("purpose") != "batch" or not isinstance(upload, web.FileField):
            return _error(400, "expected a multipart form with purpose=batch and a file")
        content = upload.file.read()
        file_id = self.store.new_file(content)
        return web.json_response(
            {
                "id": file_id,
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": upload.filename,
                "purpose": "batch",
            }
        )

    async def content(self, request: web.Request) -> web.Response:
        """``GET /v1/files/{id}/content``: a file, as the download faults allow."""
        content = self.store.files.get(request.match_info["id"])
        served = self.store.download(content) if content is not None else None
        if served is None:
            return _error(404, f"No such File object: {request.match_info['id']}")
        return web.Response(body=served, content_type="application/octet-stream")

    async def create(self, request: web.Request) -> web.Response:
        """``POST /v1/batches``: a batch over an uploaded file."""
        body = orjson.loads(await request.read() or b"{}")
        endpoint = body.get("endpoint")
        if endpoint not in ENDPOINT_FORMATS:
            return _error(400, f"endpoint must be one of {', '.join(ENDPOINT_FORMATS)}")
        if body.get("completion_window") != "24h":
            return _error(400, "completion_window must be 24h")
        content = self.store.files.get(str(body.get("input_file_id")))
        if content is None:
            return _error(404, f"No such File object: {body.get('input_file_id')}")
        lines, invalid = _openai_lines(content, endpoint)
        if invalid is None and self.store.invalid_now():
            invalid = (1, "simulated validation failure: this model is not allowed in batches")
        batch = HeldBatch(
            id=f"batch_{uuid.uuid4().hex[:24]}",
            flavour="openai",
            created_at=time.time(),
            lines=lines,
            endpoint=endpoint,
            input_file_id=str(body["input_file_id"]),
            metadata=dict(body.get("metadata") or {}),
            invalid=invalid,
        )
        self.store.add(batch)
        await asyncio.sleep(self.store.config.accept_delay_s)
        return web.json_response(await self._openai(batch, request))

    async def show(self, request: web.Request) -> web.Response:
        """``GET /v1/batches/{id}``."""
        batch = self.store.batches.get(request.match_info["id"])
        if batch is None or batch.flavour != "openai":
            return _error(404, f"No batch found with id '{request.match_info['id']}'")
        return web.json_response(await self._openai(batch, request))

    async def list_batches(self, request: web.Request) -> web.Response:
        """``GET /v1/batches``: newest first, paged by ``after``."""
        mine = [b for b in reversed(self.store.batches.values()) if b.flavour == "openai"]
        page, more = _page(mine, request.query.get("after"), request.query.get("limit"))
        data = [await self._openai(b, request) for b in page]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "has_more": more,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
            }
        )

    async def cancel(self, request: web.Request) -> web.Response:
        """``POST /v1/batches/{id}/cancel``."""
        batch = self.store.batches.get(request.match_info["id"])
        if batch is None or batch.flavour != "openai":
            return _error(404, f"No batch found with id '{request.match_info['id']}'")
        if batch.answers is None and batch.cancelled_at is None:
            batch.cancelled_at = time.time()
        return web.json_response(await self._openai(batch, request))

    async def _openai(self, batch: HeldBatch, request: web.Request) -> JsonObject:
        await self.store.settle(batch, request)
        total = len(batch.lines)
        shown: JsonObject = {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "errors": None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": "in_progress",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(batch.created_at),
            "expires_at": int(batch.created_at + WINDOW_S),
            "request_counts": {"total": total, "completed": batch.done_count(), "failed": 0},
            "metadata": batch.metadata,
        }
        if batch.invalid is not None:
            line, reason = batch.invalid
            errors = [{"code": "invalid_request", "message": reason, "param": None, "line": line}]
            shown.update(status="failed", errors={"object": "list", "data": errors})
            shown["request_counts"] = {"total": 0, "completed": 0, "failed": 0}
            return shown
        if batch.answers is None:
            shown["status"] = "cancelling" if batch.cancelled_at is not None else "in_progress"
            return shown
        self._openai_files(batch, shown)
        return shown

    def _openai_files(self, batch: HeldBatch, shown: JsonObject) -> None:
        assert batch.answers is not None
        if "output" not in batch.metadata.get("_files", {}):
            ok: list[JsonObject] = []
            bad: list[JsonObject] = []
            for answer in reversed(batch.answers):  # any order: results join by custom_id
                item: JsonObject = {"id": f"batch_req_{uuid.uuid4().hex[:16]}"}
                item["custom_id"] = answer.custom_id
                if answer.outcome == "answered":
                    item["response"] = {"status_code": answer.status, "body": answer.body}
                    item["error"] = None
                    (ok if answer.status == 200 else bad).append(item)
                else:
                    code = "batch_expired" if answer.outcome == "expired" else "batch_cancelled"
                    item.update(response=None, error={"code": code, "message": f"{code}"})
                    bad.append(item)
            files = {"output": self.store.new_file(_jsonl(ok)) if ok else None}
            files["error"] = self.store.new_file(_jsonl(bad)) if bad else None
            batch.metadata["_files"] = files
        files = batch.metadata["_files"]
        counted = [a for a in batch.answers if a.outcome == "answered"]
        status = "completed"
        if batch.cancelled_at is not None:
            status = "cancelled"
        elif batch.expire:
            status = "expired"
        shown.update(
            status=status,
            output_file_id=files["output"],
            error_file_id=files["error"],
            completed_at=int(batch.ended_at or 0),
            metadata={k: v for k, v in batch.metadata.items() if k != "_files"},
        )
        shown["request_counts"] = {
            "total": len(batch.lines),
            "completed": sum(1 for a in counted if a.status == 200),
            "failed": len(batch.lines) - sum(1 for a in counted if a.status == 200),
        }

    # Anthropic

    async def create_messages(self, request: web.Request) -> web.Response:
        """``POST /v1/messages/batches``: validated at once (400 for the first bad request)."""
        body = orjson.loads(await request.read() or b"{}")
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _error(400, "requests: expected a non-empty list", anthropic=True)
        problem = _anthropic_problem(requests)
        if problem is None and self.store.invalid_now():
            problem = "requests.0.params.model: simulated validation failure (not allowed)"
        if problem is not None:
            return _error(400, problem, anthropic=True)
        batch = HeldBatch(
            id=f"msgbatch_{uuid.uuid4().hex[:24]}",
            flavour="anthropic",
            created_at=time.time(),
            lines=requests,
        )
        self.store.add(batch)
        await asyncio.sleep(self.store.config.accept_delay_s)
        return web.json_response(await self._anthropic(batch, request))

    async def show_messages(self, request: web.Request) -> web.Response:
        """``GET /v1/messages/batches/{id}``."""
        batch = self.store.batches.get(request.match_info["id"])
        if batch is None or batch.flavour != "anthropic":
            return _error(404, "batch not found", anthropic=True)
        return web.json_response(await self._anthropic(batch, request))

    async def list_messages(self, request: web.Request) -> web.Response:
        """``GET /v1/messages/batches``: newest first, paged by ``after_id``."""
        mine = [b for b in reversed(self.store.batches.values()) if b.flavour == "anthropic"]
        page, more = _page(mine, request.query.get("after_id"), request.query.get("limit"))
        data = [await self._anthropic(b, request) for b in page]
        return web.json_response(
            {
                "data": data,
                "has_more": more,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
            }
        )

    async def cancel_messages(self, request: web.Request) -> web.Response:
        """``POST /v1/messages/batches/{id}/cancel``."""
        batch = self.store.batches.get(request.match_info["id"])
        if batch is None or batch.flavour != "anthropic":
            return _error(404, "batch not found", anthropic=True)
        if batch.answers is None and batch.cancelled_at is None:
            batch.cancelled_at = time.time()
        return web.json_response(await self._anthropic(batch, request))

    async def results(self, request: web.Request) -> web.Response:
        """``GET .../{id}/results``: one JSONL line per request, in no particular order."""
        batch = self.store.batches.get(request.match_info["id"])
        if batch is None or batch.answers is None:
            return _error(404, "no results for this batch", anthropic=True)
        lines = []
        for answer in reversed(batch.answers):
            result: JsonObject = {"type": answer.outcome}
            if answer.outcome == "cancelled":
                result = {"type": "canceled"}
            elif answer.status == 200:
                result = {"type": "succeeded", "message": answer.body}
            elif answer.outcome == "answered":
                result = {"type": "errored", "error": answer.body}
            lines.append({"custom_id": answer.custom_id, "result": result})
        served = self.store.download(_jsonl(lines))
        if served is None:
            return _error(404, "results not found", anthropic=True)
        return web.Response(body=served, content_type="application/binary")

    async def _anthropic(self, batch: HeldBatch, request: web.Request) -> JsonObject:
        await self.store.settle(batch, request)
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.answers is None:
            counts["succeeded"] = batch.done_count()
            counts["processing"] = len(batch.lines) - counts["succeeded"]
        else:
            for answer in batch.answers:
                kind = {"cancelled": "canceled", "expired": "expired"}.get(answer.outcome)
                counts[kind or ("succeeded" if answer.status == 200 else "errored")] += 1
        ended = batch.answers is not None
        status = "ended" if ended else "in_progress"
        if not ended and batch.cancelled_at is not None:
            status = "canceling"
        base = f"{request.scheme}://{request.host}"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "ended_at": _iso(batch.ended_at),
            "created_at": _iso(batch.created_at),
            "expires_at": _iso(batch.created_at + WINDOW_S),
            "cancel_initiated_at": _iso(batch.cancelled_at),
            "results_url": f"{base}/v1/messages/batches/{batch.id}/results" if ended else None,
        }


def _page(
    batches: list[HeldBatch], after: str | None, limit: str | None
) -> tuple[list[HeldBatch], bool]:
    ids = [b.id for b in batches]
    start = ids.index(after) + 1 if after in ids else 0
    size = max(1, min(int(limit or 20), 100)) if (limit or "20").isdigit() else 20
    return batches[start : start + size], start + size < len(batches)


def _openai_lines(content: bytes, endpoint: str) -> tuple[list[JsonObject], tuple[int, str] | None]:
    """The lines of an input file, and the first line that fails validation (1-based)."""
    lines: list[JsonObject] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.splitlines(), start=1):
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return lines, (number, "the line is not valid JSON")
        custom_id = line.get("custom_id") if isinstance(line, dict) else None
        if not isinstance(custom_id, str) or not 0 < len(custom_id) <= 64:
            return lines, (number, "custom_id must be a string of 1 to 64 characters")
        if custom_id in seen:
            return lines, (number, f"duplicate custom_id {custom_id!r}")
        if line.get("url") != endpoint or line.get("method") != "POST":
            return lines, (number, f"each line must POST to the batch's endpoint {endpoint}")
        seen.add(custom_id)
        lines.append(line)
    return lines, None


def _anthropic_problem(requests: list[Any]) -> str | None:
    seen: set[str] = set()
    for index, item in enumerate(requests):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
            return f"requests.{index}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$"
        if custom_id in seen:
            return f"requests.{index}.custom_id: duplicate {custom_id!r}"
        params = item.get("params")
        if not isinstance(params, dict) or "max_tokens" not in params or "model" not in params:
            return f"requests.{index}.params: model and max_tokens are required"
        seen.add(custom_id)
    return None
