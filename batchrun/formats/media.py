"""What the artifact formats share: their ``Answer``, the files in a prompt, multipart bodies.

``media_answer`` builds the one ``Answer`` of an image, audio, rerank or
video answer; ``prompt_text``, ``prompt_images``, ``prompt_audio`` and
``prompt_documents`` read what ``plan`` put into a row's last user turn
(text, image data URLs, an ``input_audio`` part, a ``documents`` part);
``multipart`` writes a ``multipart/form-data`` body with batchrun's fixed
boundary (``MULTIPART_TYPE``), so one Content-Type serves every request.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from batchrun.formats.base import JsonObject, Reply, Usage, last_user_content
from batchrun.magic import EXTENSIONS
from batchrun.record import Answer, Blob

# Long and fixed: the chance of it inside a file is nil, and a fixed one keeps each
# model's Content-Type constant (``PlannedModel.content_type``).
BOUNDARY = "batchrun-form-3f9c2a7e51d84b06a1c6e0d9b7f4a25c"
MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def media_answer(reply: Reply, usage: Usage, **fields: Any) -> Answer:
    """The ``Answer`` of a media format: ``fields`` plus the reply's HTTP facts and usage."""
    fields.setdefault("response", None)
    fields.setdefault("finish_reason", "stop")
    fields.setdefault("response_id", None)
    fields.setdefault("served_model", None)
    return Answer(
        prompt_tokens=usage.prompt,
        completion_tokens=usage.completion,
        total_tokens=usage.total,
        cached_tokens=usage.cached,
        reasoning_tokens=usage.reasoning,
        latency_s=reply.latency_s,
        http_status=reply.http_status,
        gateway_request_id=reply.gateway_request_id,
        ratelimit=reply.ratelimit,
        **fields,
    )


def _parts(messages_json: bytes) -> list[JsonObject]:
    content = last_user_content(json.loads(messages_json))
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [p for p in content if isinstance(p, dict)]


def prompt_text(messages_json: bytes) -> str:
    """The text of the last user turn (its text parts joined)."""
    return " ".join(str(p["text"]) for p in _parts(messages_json) if p.get("type") == "text")


def prompt_images(messages_json: bytes) -> list[tuple[bytes, str]]:
    """The inlined images of the last user turn: bytes and MIME type each."""
    images = []
    for part in _parts(messages_json):
        url = (
            str(part.get("image_url", {}).get("url", "")) if part.get("type") == "image_url" else ""
        )
        if url.startswith("data:") and ";base64," in url:
            mime, data = url[5:].split(";base64,", 1)
            images.append((base64.b64decode(data), mime))
    return images


def prompt_audio(messages_json: bytes) -> tuple[bytes, str] | None:
    """The audio of the last user turn: bytes and its format (``wav``, ``mp3``...)."""
    for part in _parts(messages_json):
        if part.get("type") == "input_audio":
            audio = part["input_audio"]
            return base64.b64decode(audio["data"]), str(audio["format"])
    return None


def prompt_documents(messages_json: bytes) -> list[str]:
    """The documents of the last user turn (a rerank's)."""
    for part in _parts(messages_json):
        if part.get("type") == "documents":
            return [str(d) for d in part["documents"]]
    return []


def multipart(fields: JsonObject, files: list[tuple[str, str, str, bytes]]) -> bytes:
    """A ``multipart/form-data`` body: text fields, then files (name, filename, type, bytes).

    A field that is not a string goes as JSON (``n: 2`` as ``2``).
    """
    dash = f"--{BOUNDARY}".encode()
    chunks: list[bytes] = []
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value)
        chunks += [
            dash,
            f'\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode(),
            text.encode(),
            b"\r\n",
        ]
    for name, filename, mime, data in files:
        chunks += [
            dash,
            f'\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {mime}\r\n\r\n".encode(),
            data,
            b"\r\n",
        ]
    chunks.append(dash + b"--\r\n")
    return b"".join(chunks)


def file_name(stem: str, mime: str) -> str:
    """A file name for an upload of type ``mime``."""
    return f"{stem}.{EXTENSIONS.get(mime, 'bin')}"


def wav_seconds(data: bytes) -> float | None:
    """The length of a PCM WAV file in seconds, from its header (None if it is not one)."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset = 12
    rate = block = 0
    while offset + 8 <= len(data):
        chunk, size = (
            data[offset : offset + 4],
            struct.unpack("<I", data[offset + 4 : offset + 8])[0],
        )
        if chunk == b"fmt ":
            rate = struct.unpack("<I", data[offset + 12 : offset + 16])[0]
            block = struct.unpack("<H", data[offset + 20 : offset + 22])[0]
        elif chunk == b"data":
            return size / (rate * block) if rate and block else None
        offset += 8 + size + (size & 1)
    return None


def blobs_of_b64(items: list[Any], mime: str | None) -> list[Blob]:
    """The images of an ``images`` answer: ``b64_json`` decoded, ``url`` kept to be fetched."""
    blobs = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("b64_json"), str):
            blobs.append(Blob(base64.b64decode(item["b64_json"]), mime))
        elif isinstance(item.get("url"), str):
            blobs.append(Blob(None, mime, item["url"]))
    return blobs
