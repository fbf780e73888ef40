"""OpenAI's ``/audio/speech``: text in, an audio file out (the body itself, not JSON).

The prompt's text is ``input``; ``voice`` (default ``alloy``) and
``response_format`` (default ``mp3``) come from ``params``. A 200 whose
body is audio is the answer: one ``Blob`` of the promised type (checked by
its magic number when it is written), the characters spoken in
``input_chars`` and, for WAV, its length in ``media_seconds``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from batchrun.errors import JobError
from batchrun.formats.base import NO_USAGE, Encoder, Format, JsonObject, Reply, compact_json
from batchrun.formats.media import media_answer, prompt_text, wav_seconds
from batchrun.record import Answer, Blob

AUDIO_FORMATS = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "aac": "audio/aac",
}
_DROPPED = ("max_tokens", "temperature")


class SpeechFormat(Format):
    """``POST audio/speech``; the answer is the audio file."""

    api = "speech"
    token_output = False
    no_answer = "the gateway answered 200 with JSON, not audio: "

    def path(self, model_id: str) -> str:
        return "audio/speech"

    def encoder(self, model_id: str, params: JsonObject) -> Encoder:
        kept = {k: v for k, v in params.items() if k not in _DROPPED}
        kept.setdefault("voice", "alloy")
        chosen = str(kept.setdefault("response_format", "mp3"))
        if chosen not in AUDIO_FORMATS:
            raise JobError(
                f"response_format {chosen!r} cannot be checked or stored; use one of "
                f"{', '.join(AUDIO_FORMATS)}"
            )

        def encode(messages_json: bytes) -> bytes:
            return compact_json({"model": model_id, "input": prompt_text(messages_json), **kept})

        return encode

    def read(
        self, status: int, headers: Mapping[str, str], body: bytes, reply: Reply, secrets: list[str]
    ) -> Answer:
        kind = headers.get("Content-Type", "")
        if status != 200 or "json" in kind or "text/" in kind:
            return super().read(status, headers, body, reply, secrets)
        return media_answer(
            reply,
            NO_USAGE,
            blobs=[Blob(body, kind if kind.startswith("audio/") else "audio/*")],
            media_seconds=wav_seconds(body),
        )

    def billed_chars(self, body: bytes) -> int | None:
        input_text = json.loads(body).get("input")
        return len(input_text) if isinstance(input_text, str) else None

    def parse(self, payload: JsonObject, reply: Reply) -> Answer | None:
        return None  # JSON is never the answer: audio is
