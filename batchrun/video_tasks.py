"""A video request's lifecycle: submit once, record the task, poll with backoff, fetch the file.

``VideoTasks.complete`` promises one ``Answer`` per request (the video
written beside the output), and never a second submission of a request
whose task is recorded. The lifecycle is the batch lane's, over the same
parts:

- the task is a ``RemoteJob`` of one key in the output's ``RemoteRecord``,
  recorded (synced) as soon as the gateway names it, so a run stopped or
  killed while tasks run collects them on its next start;
- it is polled by ``remote_poll.poll_until``;
- it is dropped from the record once its row is written
  (``media_sender.settle_tasks``).

What is a task's own is ``TaskApi``: the submission, the status, the file
(a per-task download, where a batch has an input file and a results file).
A poll that fails is retried by the runner like any request, and resumes
the recorded task. A task the gateway says failed is forgotten (a rerun
with ``--retry-errors`` submits again). A task still running after
``TASK_TIMEOUT_S`` ends its row with ``TaskUnfinished``: not a row that is
done, so the task stays recorded and the next run collects it. A video
fetched and written is named in its job's ``detail``, so it is never fetched
twice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from batchrun.artifacts import ArtifactStore
from batchrun.classify import answer_payload, snippet
from batchrun.errors import RowError, ServerError, TaskUnfinished
from batchrun.formats.base import NO_USAGE, reply_of
from batchrun.formats.media import media_answer
from batchrun.formats.video import TaskState, VideoFormat
from batchrun.record import Answer, Request
from batchrun.remote_poll import Backoff, Sleep, poll_until
from batchrun.remote_work import TASK_KINDS, RemoteJob, RemoteRecord, task_kind
from batchrun.wire import JsonObject

POLL = Backoff(first_s=0.25, most_s=15.0, growth=1.5)
TASK_TIMEOUT_S = 3600.0


class TaskApi:
    """One video API's task steps over the run's client: submit, status, file."""

    def __init__(self, client: Any, format: VideoFormat, secrets: list[str]) -> None:
        self.client = client
        self.format = format
        self.secrets = secrets
        self.kind = task_kind(format.api)

    async def submit(self, request: Request) -> str:
        """Submit ``request``; the task id the gateway gives it."""
        format = self.format
        response = await self.client.exchange(format.api, "POST", request.model.path, request.body)
        task_id = format.task_id_of(self._payload(response))
        if task_id is None:
            raise ServerError(
                format.no_answer + snippet(response.body, self.secrets),
                http_status=response.status,
            )
        return task_id

    async def state(self, task_id: str) -> TaskState:
        """How the task stands."""
        path = self.format.status_path(task_id)
        response = await self.client.exchange(self.format.api, "GET", path)
        return self.format.state_of(self._payload(response))

    async def fetch(self, task_id: str, state: TaskState, bound: int) -> bytes:
        """The finished task's file, at most ``bound`` bytes."""
        url = state.url or self.format.content_path(task_id)
        if url is None:
            raise ServerError(f"the video task {task_id} is done but names no file")
        return bytes(await self.client.download(url, self.format.api, bound))

    def _payload(self, response: Any) -> JsonObject:
        return answer_payload(response.status, response.headers, response.body, self.secrets)


class VideoTasks:
    """Runs the video tasks of one output through a client, recording them in ``record``."""

    def __init__(
        self,
        client: Any,
        record: RemoteRecord,
        store: ArtifactStore,
        *,
        secrets: list[str],
        sleep: Sleep = asyncio.sleep,
        timeout_s: float = TASK_TIMEOUT_S,
    ) -> None:
        self._client = client
        self._record = record
        self._store = store
        self._secrets = secrets
        self._sleep = sleep
        self._timeout_s = timeout_s
        self.submitted = 0
        self.collected = 0

    async def complete(self, request: Request, format: VideoFormat) -> Answer:
        """The finished video of ``request``: its recorded task, or a new one submitted."""
        started = time.perf_counter()
        api = TaskApi(self._client, format, self._secrets)
        job = self._record.find(request.key, TASK_KINDS)
        if job is not None and job.kind != api.kind:
            self._record.remove(job)  # recorded under another API: not this request's task
            job = None
        if job is None:
            job = await self._submit(api, request)
        else:
            self.collected += 1
        task_id = str(job.remote_id)
        saved = job.detail.get("artifact")
        if not (isinstance(saved, str) and self._store.has(saved)):
            state = await self._wait(api, job)
            data = await api.fetch(task_id, state, self._store.max_artifact_bytes)
            saved, mime = await asyncio.to_thread(self._store.save, data, "video/*")
            seconds = state.seconds if state.seconds is not None else _seconds(request)
            job.detail.update(artifact=saved, type=mime, seconds=seconds)
            self._record.save()
        return media_answer(
            reply_of(200, {}, time.perf_counter() - started),
            NO_USAGE,
            artifact_paths=[saved],
            artifact_type=job.detail.get("type"),
            media_seconds=job.detail.get("seconds"),
            response_id=task_id,
        )

    async def _submit(self, api: TaskApi, request: Request) -> RemoteJob:
        task_id = await api.submit(request)
        job = RemoteJob.new(api.kind, request.model.name, [request.key])
        self._record.submitted(job, task_id, at=job.prepared_at)
        self.submitted += 1
        return job

    async def _wait(self, api: TaskApi, job: RemoteJob) -> TaskState:
        """Poll the task until it is done, with ``POLL``'s backoff."""
        task_id = str(job.remote_id)

        async def poll() -> TaskState | None:
            state = await api.state(task_id)
            if state.done:
                return state
            if state.error is not None:
                self._record.remove(job)
                raise RowError(state.error)
            return None

        state = await poll_until(poll, POLL, sleep=self._sleep, timeout_s=self._timeout_s)
        if state is None:
            raise TaskUnfinished(
                f"the video task {task_id} was not done after {self._timeout_s:g} s; it "
                "stays recorded and the next run collects it"
            )
        return state


def _seconds(request: Request) -> float | None:
    """The seconds a request asked for (``seconds`` or ``duration``), when the task does not say."""
    params = request.model.params
    value = params.get("seconds", params.get("duration"))
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
