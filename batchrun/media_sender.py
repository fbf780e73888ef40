"""The sender of a job with artifact kinds: files written beside the output, videos as tasks.

``media_sender`` promises the plain client for a job of text formats, and
otherwise a ``MediaSender``: each answer's files (``Answer.blobs``,
fetched first when they are URLs) checked and written by the
``ArtifactStore`` and named in ``artifact_paths``; video requests run as
tasks recorded in the output's ``RemoteRecord`` (``video_tasks.py``), and
``settle_tasks`` drops those whose rows are written; the characters and
seconds a request is priced by filled in.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from batchrun.artifacts import ArtifactStore
from batchrun.formats import FORMATS
from batchrun.formats.base import Api
from batchrun.formats.video import VideoFormat
from batchrun.record import Answer, Request
from batchrun.remote_work import TASK_KINDS, RemoteRecord
from batchrun.video_tasks import VideoTasks

if TYPE_CHECKING:
    from collections.abc import Container

    from batchrun.client import GatewayClient, Sender
    from batchrun.plan import PlannedModel

# The APIs whose answers are files (gemini: when a model answers with images).
MEDIA_APIS = frozenset(
    {"images", "speech", "transcription", "translation", "video", "videos", "gemini"}
)


class MediaSender:
    """A ``Sender`` that stores answers' files and runs video tasks, over one client."""

    def __init__(
        self, client: GatewayClient, output: Path, record: RemoteRecord, secrets: list[str]
    ) -> None:
        self._client = client
        self.store = ArtifactStore(output)
        self.tasks = VideoTasks(client, record, self.store, secrets=secrets)

    async def complete(self, request: Request) -> Answer:
        """The answer of ``request`` with its files written and named."""
        format = FORMATS[request.model.api]
        if isinstance(format, VideoFormat):
            answer = await self.tasks.complete(request, format)
        else:
            answer = await self._client.complete(request)
        if answer.blobs:
            await self._store(answer, request.model.api)
        if answer.input_chars is None:
            answer.input_chars = format.billed_chars(request.body)
        if answer.media_seconds is None:
            answer.media_seconds = format.request_seconds(request.body)
        return answer

    async def _store(self, answer: Answer, api: Api) -> None:
        """Fetch (within the bound) and write each file; name them in the answer."""
        assert answer.blobs is not None
        paths: list[str] = []
        types: list[str] = []
        for blob in answer.blobs:
            data = blob.data
            if data is None:
                assert blob.url is not None
                data = await self._client.download(blob.url, api, self.store.max_artifact_bytes)
            path, mime = await asyncio.to_thread(self.store.save, data, blob.mime)
            paths.append(path)
            types.append(mime)
        answer.blobs = None
        answer.artifact_paths = paths
        answer.artifact_type = ",".join(dict.fromkeys(types))


def media_sender(
    client: GatewayClient,
    output: Path,
    record: RemoteRecord,
    models: list[PlannedModel],
    done: Container[str],
    secrets: list[str],
) -> Sender:
    """The client itself for text formats; else a ``MediaSender``, the tasks of ``done``
    requests dropped from ``record`` first."""
    if not any(model.api in MEDIA_APIS for model in models):
        return client
    record.settle(done, TASK_KINDS)
    return MediaSender(client, output, record, secrets)


def settle_tasks(record: RemoteRecord, output: Path) -> None:
    """Drop the video tasks whose rows are now written (after a flush)."""
    if record.of(TASK_KINDS):
        from batchrun.store import done_keys

        with contextlib.suppress(OSError):
            record.settle(done_keys(output), TASK_KINDS)
