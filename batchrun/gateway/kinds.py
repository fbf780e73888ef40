"""The gateway's artifact APIs: images, speech, transcription, translation, rerank, Gemini images.

One object per API, mirroring the client's registry (``KIND_FORMATS``,
keyed like ``batchrun.formats.FORMATS``), each with the shape of
``call.ApiFormat``. Answers are deterministic: images are PNGs coloured by
the prompt (``b64_json``, or a ``url`` on this gateway when asked), speech
is audio keeping its text (``media.wav``), a transcript is the text an
uploaded WAV keeps (words garbled at the model's ``accuracy``), a rerank
orders documents by the words they share with the query. A multipart
upload is read by ``read_body`` into the same dict a JSON body gives.
With ``settings.wrong_media`` every file answer carries bytes of another
type than promised (for tests of the client's magic-number check).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from batchrun.gateway.call import Call, json_response
from batchrun.gateway.formats import GeminiFormat
from batchrun.gateway.media import audio, png, spoken_text, wav
from batchrun.gateway.replies import count_tokens, unit_hash
from batchrun.wire import JsonObject

FILES_PATH = "/sim-files"
_WORD = re.compile(r"\w+")


async def read_body(request: web.Request) -> Any:
    """A request's body as a dict: JSON, or a multipart form (files as name, type and bytes).

    None when it is neither.
    """
    if request.content_type == "multipart/form-data":
        form: JsonObject = {}
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            data = bytes(await part.read())
            if part.filename is None:
                form[part.name] = data.decode("utf-8", "replace")
            else:
                kind = part.headers.get("Content-Type", "application/octet-stream")
                upload = {"filename": part.filename, "type": kind, "data": data}
                form.setdefault(part.name, []).append(upload)
        return form
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None


class _Kind:
    """What every artifact API shares: the model in the body."""

    name = ""
    path = ""

    def model_of(self, request: web.Request, body: JsonObject) -> object:
        """The body's ``model``."""
        return body.get("model")

    def texts(self, body: JsonObject) -> tuple[str, str]:
        """The prompt (or input, or query), twice: there is no conversation."""
        text = str(body.get("prompt") or body.get("input") or body.get("query") or "")
        return text, text


def _image_item(call: Call, index: int, prompt: str) -> JsonObject:
    uploads = call.body.get("image") or call.body.get("image[]") or []
    given = hashlib.sha256(b"".join(u["data"] for u in uploads)).hexdigest() if uploads else ""
    seed = f"{call.model}\x00{prompt}\x00{index}\x00{given}"
    if call.body.get("response_format") == "url":
        origin = f"{call.request.scheme}://{call.request.host}"
        name = hashlib.sha256(seed.encode()).hexdigest()[:24]
        return {"url": f"{origin}{FILES_PATH}/image/{name}.png"}
    data = wav("wrong type") if call.settings.wrong_media else png(seed)
    return {"b64_json": base64.b64encode(data).decode(), "revised_prompt": prompt}


class ImagesFormat(_Kind):
    """``POST /v1/images/generations``: ``n`` PNGs coloured by the prompt."""

    name = "images"
    path = "/v1/images/generations"

    async def respond(self, call: Call) -> web.StreamResponse:
        """An ``ImagesResponse``."""
        prompt = str(call.body.get("prompt", ""))
        count = int(str(call.body.get("n", 1)) or 1)
        tokens = count_tokens(prompt)
        return json_response(
            {
                "created": 0,
                "data": [_image_item(call, i, prompt) for i in range(max(1, min(count, 10)))],
                "usage": {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens},
            }
        )


class ImageEditsFormat(ImagesFormat):
    """``POST /v1/images/edits``: multipart; the images uploaded change the colour."""

    name = "image_edits"
    path = "/v1/images/edits"

    async def respond(self, call: Call) -> web.StreamResponse:
        """An ``ImagesResponse``; 400 without an uploaded image."""
        uploads = call.body.get("image") or call.body.get("image[]") or []
        if not uploads:
            return web.json_response(
                {"error": {"message": "image is required", "type": "invalid_request_error"}},
                status=400,
            )
        return await super().respond(call)


class SpeechFormat(_Kind):
    """``POST /v1/audio/speech``: the input as audio of ``response_format``."""

    name = "speech"
    path = "/v1/audio/speech"

    async def respond(self, call: Call) -> web.StreamResponse:
        """The audio file itself."""
        text = str(call.body.get("input", ""))
        data, mime = audio(text, str(call.body.get("response_format", "mp3")))
        if call.settings.wrong_media:
            data = png(text)
        return web.Response(body=data, content_type=mime)


def _garbled(model: str, text: str, accuracy: float) -> str:
    words = text.split()
    return " ".join(
        w if unit_hash(model, w, str(i)) < accuracy else "uh" for i, w in enumerate(words)
    )


class TranscriptionFormat(_Kind):
    """``POST /v1/audio/transcriptions``: the text the uploaded WAV keeps."""

    name = "transcription"
    path = "/v1/audio/transcriptions"

    async def respond(self, call: Call) -> web.StreamResponse:
        """``{"text"}`` (or the text itself for ``response_format: text``)."""
        files = call.body.get("file") or []
        if not files:
            return web.json_response(
                {"error": {"message": "file is required", "type": "invalid_request_error"}},
                status=400,
            )
        data = files[0]["data"]
        said = spoken_text(data) or f"audio of {len(data)} bytes"
        text = _garbled(call.model, said, call.accuracy)
        if call.body.get("response_format") == "text":
            return web.Response(text=text, content_type="text/plain")
        seconds = max(1, round(len(data) / 16000))
        return json_response({"text": text, "usage": {"type": "duration", "seconds": seconds}})


class TranslationFormat(TranscriptionFormat):
    """``POST /v1/audio/translations``: the same text (the simulator speaks English only)."""

    name = "translation"
    path = "/v1/audio/translations"


class RerankFormat(_Kind):
    """``POST /v1/rerank``: documents ordered by the words they share with the query."""

    name = "rerank"
    path = "/v1/rerank"

    async def respond(self, call: Call) -> web.StreamResponse:
        """``{"results": [{index, relevance_score}], "usage"}``, best first."""
        query = {w.lower() for w in _WORD.findall(str(call.body.get("query", "")))}
        documents = [str(d) for d in call.body.get("documents") or []]
        scored = []
        for index, document in enumerate(documents):
            words = {w.lower() for w in _WORD.findall(document)}
            overlap = len(query & words) / (len(query | words) or 1)
            noise = 0.01 * unit_hash(call.model, document, "rerank")
            scored.append((round(overlap + noise, 6), index))
        scored.sort(key=lambda pair: -pair[0])
        top = call.body.get("top_n")
        if isinstance(top, int) and top > 0:
            scored = scored[:top]
        tokens = count_tokens(" ".join([*documents, str(call.body.get("query", ""))]))
        return json_response(
            {
                "id": f"rerank-{call.request_id}",
                "model": call.model,
                "results": [{"index": i, "relevance_score": s} for s, i in scored],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


class GeminiImagesFormat(GeminiFormat):
    """``generateContent``; a model with ``image`` in its name adds an inline PNG part."""

    async def respond(self, call: Call) -> web.StreamResponse:
        """A ``GenerateContentResponse``, with an image part for image models."""
        response = await super().respond(call)
        if "image" not in call.model or not isinstance(response, web.Response):
            return response
        payload = orjson.loads(response.body)  # type: ignore[arg-type]
        _, question = self.texts(call.body)
        data = wav(question) if call.settings.wrong_media else png(f"{call.model}\x00{question}")
        part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}}
        payload["candidates"][0]["content"]["parts"].append(part)
        return json_response(payload)


KIND_FORMATS = {
    f.name: f
    for f in (
        ImagesFormat(),
        ImageEditsFormat(),
        SpeechFormat(),
        TranscriptionFormat(),
        TranslationFormat(),
        RerankFormat(),
        GeminiImagesFormat(),
    )
}
