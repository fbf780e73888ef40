"""Video generation as an asynchronous task: new-api's ``/video/generations``, OpenAI's ``/videos``.

A format here promises the three requests of a task and how to read each
answer: the submission (``path``, ``encoder``; ``task_id_of`` its answer),
the status (``status_path``; ``state_of`` its answer, a ``TaskState``) and
the file (``content_path``, or the URL the status gives). The lifecycle
(submit once, record, poll with backoff, fetch) is ``video_tasks.py``'s.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

from batchrun.formats.base import (
    Api,
    Encoder,
    Format,
    JsonObject,
    Reply,
    as_dict,
    compact_json,
    str_or_none,
)
from batchrun.formats.media import prompt_text
from batchrun.record import Answer

_DONE = {"succeeded", "completed", "success", "done"}
_FAILED = {"failed", "failure", "error", "cancelled", "canceled", "expired"}
_DROPPED = ("max_tokens", "temperature")


class TaskState(NamedTuple):
    """Where a task stands: done (with the file's URL, if the status names one), failed, or on."""

    done: bool
    error: str | None = None
    url: str | None = None
    seconds: float | None = None
    progress: float | None = None


class VideoFormat(Format):
    """new-api's ``POST video/generations``, ``GET video/generations/{task_id}``."""

    api: ClassVar[Api] = "video"
    token_output = False
    no_answer = "the gateway accepted the video without a task id: "

    def path(self, model_id: str) -> str:
        return "video/generations"

    def status_path(self, task_id: str) -> str:
        """The path that tells how a task stands."""
        return f"video/generations/{task_id}"

    def content_path(self, task_id: str) -> str | None:
        """The path of a finished task's file, when the status gives no URL."""
        return None

    def encoder(self, model_id: str, params: JsonObject) -> Encoder:
        kept = {k: v for k, v in params.items() if k not in _DROPPED}

        def encode(messages_json: bytes) -> bytes:
            return compact_json({"model": model_id, "prompt": prompt_text(messages_json), **kept})

        return encode

    def task_id_of(self, payload: JsonObject) -> str | None:
        """The id of a submitted task."""
        data = as_dict(payload.get("data")) or payload
        return str_or_none(data.get("task_id")) or str_or_none(data.get("id"))

    def state_of(self, payload: JsonObject) -> TaskState:
        """How a task stands, from its status answer."""
        data = as_dict(payload.get("data")) or payload
        status = str(data.get("status", "")).lower()
        meta = as_dict(data.get("metadata"))
        seconds = _number(data.get("seconds", meta.get("duration")))
        if status in _FAILED:
            error = as_dict(data.get("error"))
            reason = error.get("message") or data.get("fail_reason") or status
            return TaskState(False, f"the video task {status}: {reason}")
        if status in _DONE:
            url = str_or_none(data.get("url")) or str_or_none(data.get("video_url"))
            return TaskState(True, url=url, seconds=seconds)
        return TaskState(False, progress=_number(data.get("progress")))

    def parse(self, payload: JsonObject, reply: Reply) -> Answer | None:
        return None  # a task's answer is assembled by video_tasks from its three requests


class VideosFormat(VideoFormat):
    """OpenAI's ``POST videos``, ``GET videos/{id}``, ``GET videos/{id}/content``."""

    api = "videos"

    def path(self, model_id: str) -> str:
        return "videos"

    def status_path(self, task_id: str) -> str:
        return f"videos/{task_id}"

    def content_path(self, task_id: str) -> str | None:
        return f"videos/{task_id}/content"


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
