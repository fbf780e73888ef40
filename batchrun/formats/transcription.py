"""OpenAI's ``/audio/transcriptions`` and ``/audio/translations``: an audio file in, text out.

The row's audio (``prompt.audio_column``, put into the messages by
``plan``) goes as the ``file`` of a multipart upload with ``model`` and the
job's ``params`` (``language``, ``response_format``...); the prompt's text,
when there is any, goes as ``prompt``. The text comes back in ``response``
(from JSON ``{"text"}``, or the body itself for ``text``/``srt``/``vtt``),
the audio's length in ``media_seconds`` (what ``per_second`` prices).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from batchrun.formats.base import (
    NO_USAGE,
    Api,
    Encoder,
    Format,
    JsonObject,
    Reply,
    as_dict,
    str_or_none,
    usage_of,
)
from batchrun.formats.media import (
    MULTIPART_TYPE,
    file_name,
    media_answer,
    multipart,
    prompt_audio,
    prompt_text,
    wav_seconds,
)
from batchrun.magic import canonical
from batchrun.media_input import AUDIO_TYPES
from batchrun.record import Answer

_DROPPED = ("max_tokens",)


class TranscriptionFormat(Format):
    """``POST audio/transcriptions``, multipart; the text in ``response``."""

    api: ClassVar[Api] = "transcription"
    token_output = False
    content_type: ClassVar[str | None] = MULTIPART_TYPE
    no_answer = "the gateway answered 200 without a transcript: "

    def path(self, model_id: str) -> str:
        return "audio/transcriptions"

    def encoder(self, model_id: str, params: JsonObject) -> Encoder:
        kept = {k: v for k, v in params.items() if k not in _DROPPED}

        def encode(messages_json: bytes) -> bytes:
            audio = prompt_audio(messages_json)
            data, suffix = audio if audio is not None else (b"", "wav")
            mime = AUDIO_TYPES.get(f".{suffix}", "application/octet-stream")
            fields: JsonObject = {"model": model_id}
            text = prompt_text(messages_json).strip()
            if text:
                fields["prompt"] = text
            fields.update(kept)
            return multipart(fields, [("file", file_name("audio", mime), mime, data)])

        return encode

    def read(
        self, status: int, headers: Mapping[str, str], body: bytes, reply: Reply, secrets: list[str]
    ) -> Answer:
        kind = canonical(headers.get("Content-Type")) or ""
        if status == 200 and kind.startswith("text/"):
            return media_answer(reply, NO_USAGE, response=body.decode("utf-8", "replace").strip())
        return super().read(status, headers, body, reply, secrets)

    def parse(self, payload: JsonObject, reply: Reply) -> Answer | None:
        text = payload.get("text")
        if not isinstance(text, str):
            return None
        usage = as_dict(payload.get("usage"))
        seconds = payload.get("duration", usage.get("seconds"))
        return media_answer(
            reply,
            usage_of(usage, fill_total=True),
            response=text,
            media_seconds=float(seconds) if isinstance(seconds, int | float) else None,
            served_model=str_or_none(payload.get("model")),
        )

    def request_seconds(self, body: bytes) -> float | None:
        """The length of the WAV file a request uploads (when the answer does not say)."""
        start = body.find(b"RIFF")
        return wav_seconds(body[start:]) if start >= 0 else None


class TranslationFormat(TranscriptionFormat):
    """``POST audio/translations``: the audio's speech as English text."""

    api = "translation"

    def path(self, model_id: str) -> str:
        return "audio/translations"
