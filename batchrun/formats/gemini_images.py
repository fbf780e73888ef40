"""Gemini's image output ("Nano Banana"): inline data parts of ``generateContent`` as files.

``GeminiImagesFormat`` is the ``gemini`` format with one addition: every
``inlineData`` (or ``inline_data``) part of the first candidate becomes a
``Blob`` of its ``mimeType``, written beside the output like any other
image; the text parts stay the ``response``.
"""

from __future__ import annotations

import base64
import binascii

from batchrun.formats.base import JsonObject, Reply, as_dict
from batchrun.formats.gemini import GeminiFormat
from batchrun.record import Answer, Blob


class GeminiImagesFormat(GeminiFormat):
    """``generateContent`` whose inline data parts are kept as artifacts."""

    def parse(self, payload: JsonObject, reply: Reply) -> Answer | None:
        answer = super().parse(payload, reply)
        if answer is None:
            return None
        candidates = payload.get("candidates") or []
        first = as_dict(candidates[0]) if isinstance(candidates, list) and candidates else {}
        blobs = []
        for part in as_dict(first.get("content")).get("parts") or []:
            inline = as_dict(as_dict(part).get("inlineData") or as_dict(part).get("inline_data"))
            data = inline.get("data")
            if not isinstance(data, str):
                continue
            try:
                decoded = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            mime = inline.get("mimeType") or inline.get("mime_type")
            blobs.append(Blob(decoded, str(mime) if mime else None))
        if blobs:
            answer.blobs = blobs
        return answer
