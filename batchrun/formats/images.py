"""OpenAI's ``/images/generations`` and ``/images/edits``: a prompt in, images out.

Generations send JSON (the prompt, then ``size``, ``quality``, ``n`` and the
rest from ``params``); edits, chosen when the job has ``prompt.image_column``,
send the row's images as a multipart upload. Either answer holds
``data: [{b64_json}|{url}]``: each image becomes a ``Blob`` the artifact
store checks and writes (a URL is fetched first, within its size bound).
"""

from __future__ import annotations

from typing import ClassVar

from batchrun.formats.base import (
    Encoder,
    Format,
    JsonObject,
    Reply,
    compact_json,
    str_or_none,
    usage_of,
)
from batchrun.formats.media import (
    MULTIPART_TYPE,
    blobs_of_b64,
    file_name,
    media_answer,
    multipart,
    prompt_images,
    prompt_text,
)
from batchrun.record import Answer

# What ``output_format`` promises; without it any image type is accepted.
_OUTPUT_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "webp": "image/webp",
}
_DROPPED = ("max_tokens", "temperature")


def promised_image(params: JsonObject) -> str:
    """The MIME type the parameters ask for (``image/*``: any image)."""
    return _OUTPUT_TYPES.get(str(params.get("output_format", "")).lower(), "image/*")


class ImagesFormat(Format):
    """``POST images/generations``; images from ``prompt.image_column`` make it an edit."""

    api = "images"
    token_output = False
    no_answer = "the gateway answered 200 without images: "

    def path(self, model_id: str) -> str:
        return "images/generations"

    def variant(self, with_images: bool) -> Format:
        return ImageEditsFormat() if with_images else self

    def encoder(self, model_id: str, params: JsonObject) -> Encoder:
        kept = {k: v for k, v in params.items() if k not in _DROPPED}

        def encode(messages_json: bytes) -> bytes:
            return compact_json({"model": model_id, "prompt": prompt_text(messages_json), **kept})

        return encode

    def parse(self, payload: JsonObject, reply: Reply) -> Answer | None:
        data = payload.get("data")
        blobs = blobs_of_b64(data if isinstance(data, list) else [], "image/*")
        if not blobs:
            return None
        revised = [d.get("revised_prompt") for d in data if isinstance(d, dict)]  # type: ignore[union-attr]
        return media_answer(
            reply,
            usage_of(payload.get("usage"), fill_total=True),
            response=next((r for r in revised if isinstance(r, str) and r), None),
            served_model=str_or_none(payload.get("model")),
            blobs=blobs,
        )


class ImageEditsFormat(ImagesFormat):
    """``POST images/edits``: the prompt and the row's images as ``multipart/form-data``."""

    content_type: ClassVar[str | None] = MULTIPART_TYPE

    def path(self, model_id: str) -> str:
        return "images/edits"

    def encoder(self, model_id: str, params: JsonObject) -> Encoder:
        kept = {k: v for k, v in params.items() if k not in _DROPPED}

        def encode(messages_json: bytes) -> bytes:
            images = prompt_images(messages_json)
            files = [
                (
                    "image[]" if len(images) > 1 else "image",
                    file_name(f"image{i}", mime),
                    mime,
                    data,
                )
                for i, (data, mime) in enumerate(images)
            ]
            fields = {"model": model_id, "prompt": prompt_text(messages_json), **kept}
            return multipart(fields, files)

        return encode
