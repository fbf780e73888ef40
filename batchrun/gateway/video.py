"""The gateway's video tasks: new-api's ``/v1/video/generations`` and OpenAI's ``/v1/videos``.

Tasks keep no state on the gateway: a task id carries when it was
submitted (``vid_<ms>_<hash>``), so any gateway, even one started after
the run that submitted it, answers its status: in progress until
``settings.video_ms`` have passed, then done, with its file (``media.mp4``)
at ``/v1/videos/{id}/content`` or, for new-api, the ``url`` it names under
``/sim-files/video/``. Files named by URL (images and videos) are served
by ``serve_file`` from their name alone. ``submitted`` counts submissions.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from aiohttp import web

from batchrun.gateway.call import Call, json_response
from batchrun.gateway.kinds import FILES_PATH, _Kind
from batchrun.gateway.media import mp4, png, wav
from batchrun.gateway.settings import GatewaySettings

_TASK_ID = re.compile(r"^vid_([0-9a-f]+)_([0-9a-f]{12})$")


def new_task_id(model: str, prompt: str) -> str:
    """A task id holding its submission time (ms) and a hash of what was asked."""
    digest = hashlib.sha256(f"{model}\x00{prompt}".encode()).hexdigest()[:12]
    return f"vid_{int(time.time() * 1000):x}_{digest}"


def _progress(task_id: str, settings: GatewaySettings) -> float | None:
    """How far a task is, 0 to 100; None for an id this gateway never made."""
    match = _TASK_ID.match(task_id)
    if match is None:
        return None
    elapsed_ms = time.time() * 1000 - int(match.group(1), 16)
    if settings.video_ms <= 0:
        return 100.0
    return max(0.0, min(100.0, 100.0 * elapsed_ms / settings.video_ms))


def _not_found(task_id: str) -> web.Response:
    return web.json_response(
        {"error": {"message": f"task {task_id} not found", "type": "invalid_request_error",
                   "code": "task_not_found"}},
        status=404,
    )  # fmt: skip


class VideoSubmit(_Kind):
    """``POST /v1/video/generations`` (new-api): ``{"task_id", "status": "queued"}``."""

    name = "video"
    path = "/v1/video/generations"

    async def respond(self, call: Call) -> web.StreamResponse:
        """The new task."""
        task_id = new_task_id(call.model, str(call.body.get("prompt", "")))
        return json_response({"task_id": task_id, "status": "queued"})


class VideosSubmit(_Kind):
    """``POST /v1/videos`` (OpenAI): a ``video`` object, queued."""

    name = "videos"
    path = "/v1/videos"

    async def respond(self, call: Call) -> web.StreamResponse:
        """The new video object."""
        task_id = new_task_id(call.model, str(call.body.get("prompt", "")))
        return json_response(
            {
                "id": task_id,
                "object": "video",
                "model": call.model,
                "status": "queued",
                "progress": 0,
                "seconds": str(call.body.get("seconds", "4")),
                "size": str(call.body.get("size", "720x1280")),
            }
        )


class VideoTasks:
    """The status and file routes of video tasks."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings

    async def newapi_status(self, request: web.Request) -> web.Response:
        """``GET /v1/video/generations/{task_id}``."""
        task_id = request.match_info["task_id"]
        progress = _progress(task_id, self.settings)
        if progress is None:
            return _not_found(task_id)
        body: dict[str, Any] = {"task_id": task_id, "status": "in_progress"}
        if progress >= 100:
            origin = f"{request.scheme}://{request.host}"
            body.update(
                status="succeeded",
                url=f"{origin}{FILES_PATH}/video/{task_id}.mp4",
                format="mp4",
                metadata={"duration": 4, "fps": 24, "width": 1280, "height": 720},
            )
        return json_response({"code": "success", "message": "", "data": body})

    async def openai_status(self, request: web.Request) -> web.Response:
        """``GET /v1/videos/{task_id}``."""
        task_id = request.match_info["task_id"]
        progress = _progress(task_id, self.settings)
        if progress is None:
            return _not_found(task_id)
        done = progress >= 100
        return json_response(
            {
                "id": task_id,
                "object": "video",
                "status": "completed" if done else "in_progress",
                "progress": int(progress),
                "seconds": "4",
            }
        )

    async def openai_content(self, request: web.Request) -> web.Response:
        """``GET /v1/videos/{task_id}/content``: the MP4 of a finished task."""
        task_id = request.match_info["task_id"]
        progress = _progress(task_id, self.settings)
        if progress is None or progress < 100:
            return _not_found(task_id)
        return web.Response(body=self._video(task_id), content_type="video/mp4")

    async def serve_file(self, request: web.Request) -> web.Response:
        """``GET /sim-files/{kind}/{name}``: an image or video named by an earlier answer."""
        kind, name = request.match_info["kind"], request.match_info["name"]
        stem = name.rsplit(".", 1)[0]
        if kind == "image":
            data = wav(stem) if self.settings.wrong_media else png(stem)
            return web.Response(body=data, content_type="image/png")
        if kind == "video" and _progress(stem, self.settings) is not None:
            return web.Response(body=self._video(stem), content_type="video/mp4")
        raise web.HTTPNotFound()

    def _video(self, task_id: str) -> bytes:
        return wav(task_id) if self.settings.wrong_media else mp4(task_id)
