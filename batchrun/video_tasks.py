"""A video request's lifecycle: submit once, record the task, poll with backoff, fetch the file.

``VideoTasks.complete`` promises one ``Answer`` (the video written beside
the output) per request, and never a second submission of a request whose task is
recorded: the task id is written to the output's ``PendingWork`` (synced)
as soon as the gateway names it, so a run stopped or killed while tasks
run collects them on its next start. A poll that fails is retried by the
runner like any request, and resumes the recorded task; a task the gateway
says failed is forgotten (a rerun with ``--retry-errors`` submits again);
a task still running after ``TASK_TIMEOUT_S`` ends its row with an error
and stays recorded, so the next run collects it. A video fetched and
written is named in its record, so it is never fetched twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from batchrun.artifacts import ArtifactStore
from batchrun.classify import answer_payload, snippet
from batchrun.errors import RowError, ServerError
from batchrun.formats.base import NO_USAGE, reply_of
from batchrun.formats.media import media_answer
from batchrun.formats.video import TaskState, VideoFormat
from batchrun.pending import PendingWork
from batchrun.record import Answer, Request
from batchrun.wire import JsonObject

POLL_FIRST_S = 0.25
POLL_MAX_S = 15.0
POLL_GROWTH = 1.5
TASK_TIMEOUT_S = 3600.0
Sleep = Callable[[float], Awaitable[None]]


class VideoTasks:
    """Runs the video tasks of one output through a client, recording them in ``pending``."""

    def __init__(
        self,
        client: Any,
        pending: PendingWork,
        store: ArtifactStore,
        *,
        secrets: list[str],
        sleep: Sleep = asyncio.sleep,
        timeout_s: float = TASK_TIMEOUT_S,
    ) -> None:
        self._client = client
        self._pending = pending
        self._store = store
        self._secrets = secrets
        self._sleep = sleep
        self._timeout_s = timeout_s
        self.submitted = 0
        self.collected = 0

    async def complete(self, request: Request, format: VideoFormat) -> Answer:
        """The finished video of ``request``: its recorded task, or a new one submitted."""
        started = time.perf_counter()
        entry = self._pending.get(request.key)
        if entry is None or entry.get("api") != format.api:
            entry = await self._submit(request, format)
        else:
            self.collected += 1
        task_id = str(entry["task_id"])
        saved = entry.get("artifact")
        if not (isinstance(saved, str) and self._store.has(saved)):
            state = await self._wait(format, task_id)
            data = await self._fetch(format, task_id, state)
            saved, mime = await asyncio.to_thread(self._store.save, data, "video/*")
            seconds = state.seconds if state.seconds is not None else _seconds(request)
            entry = {**entry, "artifact": saved, "type": mime, "seconds": seconds}
            self._pending.add(request.key, entry)
        return media_answer(
            reply_of(200, {}, time.perf_counter() - started),
            NO_USAGE,
            artifact_paths=[saved],
            artifact_type=entry.get("type"),
            media_seconds=entry.get("seconds"),
            response_id=task_id,
        )

    async def _submit(self, request: Request, format: VideoFormat) -> JsonObject:
        model = request.model
        response = await self._client.exchange(format.api, "POST", model.path, request.body)
        payload = answer_payload(response.status, response.headers, response.body, self._secrets)
        task_id = format.task_id_of(payload)
        if task_id is None:
            raise ServerError(
                format.no_answer + snippet(response.body, self._secrets),
                http_status=response.status,
            )
        entry = {"task_id": task_id, "api": format.api, "model": model.name, "at": time.time()}
        self._pending.add(request.key, entry)
        self.submitted += 1
        return entry

    async def _wait(self, format: VideoFormat, task_id: str) -> TaskState:
        """Poll the task until it is done: at ``POLL_FIRST_S``, growing to ``POLL_MAX_S``."""
        delay = POLL_FIRST_S
        deadline = time.monotonic() + self._timeout_s
        while True:
            response = await self._client.exchange(format.api, "GET", format.status_path(task_id))
            payload = answer_payload(
                response.status, response.headers, response.body, self._secrets
            )
            state = format.state_of(payload)
            if state.done:
                return state
            if state.error is not None:
                self._forget(task_id)
                raise RowError(state.error)
            if time.monotonic() >= deadline:
                raise RowError(
                    f"the video task {task_id} was not done after {self._timeout_s:g} s; it "
                    "stays recorded and the next run collects it"
                )
            await self._sleep(delay)
            delay = min(POLL_MAX_S, delay * POLL_GROWTH)

    async def _fetch(self, format: VideoFormat, task_id: str, state: TaskState) -> bytes:
        url = state.url or format.content_path(task_id)
        if url is None:
            raise ServerError(f"the video task {task_id} is done but names no file")
        return bytes(await self._client.download(url, format.api, self._store.max_artifact_bytes))

    def _forget(self, task_id: str) -> None:
        keys = [k for k, e in self._pending.entries().items() if e.get("task_id") == task_id]
        self._pending.remove(keys)


def _seconds(request: Request) -> float | None:
    """The seconds a request asked for (``seconds`` or ``duration``), when the task does not say."""
    params = request.model.params
    value = params.get("seconds", params.get("duration"))
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
