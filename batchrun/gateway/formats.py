"""The gateway's format registry: one object per API, keyed as the client's registry is.

``FORMATS`` maps "chat", "responses", "messages", "gemini" and "embeddings"
to the object that knows the API's route, reads its request and renders its
answer. Chat and Responses live in their own modules; Claude's messages,
Gemini's generateContent and embeddings are here. Answers carry the same
deterministic text (and usage) in every format; embeddings are unit vectors
derived from each input text.
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any

from aiohttp import web

from batchrun.gateway.call import ApiFormat, Call, MessagesBody, json_response, last_user
from batchrun.gateway.chat import ChatFormat
from batchrun.gateway.replies import answer, count_tokens
from batchrun.gateway.responses import ResponsesFormat
from batchrun.wire import JsonObject

EMBEDDING_DIMENSIONS = 16


def embed(text: str) -> list[float]:
    """A deterministic unit vector for ``text``."""
    digest = hashlib.sha256(text.encode()).digest() * 2
    values = [v / 2**31 for v in struct.unpack(f"<{EMBEDDING_DIMENSIONS}i", digest)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class MessagesFormat(MessagesBody):
    """Anthropic's ``POST /v1/messages``."""

    name = "messages"
    path = "/v1/messages"

    async def respond(self, call: Call) -> web.StreamResponse:
        """A ``message`` object."""
        prompt, question = self.texts(call.body)
        text = answer(call.model, question, call.accuracy)
        prompt_tokens, output_tokens = count_tokens(prompt), count_tokens(text)
        return json_response(
            {
                "id": f"msg_{call.request_id}",
                "type": "message",
                "role": "assistant",
                "model": call.model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": prompt_tokens,
                    "output_tokens": output_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            }
        )


class GeminiFormat:
    """Gemini's ``POST /v1beta/models/{model}:generateContent``."""

    name = "gemini"
    path = "/v1beta/models/{model}:generateContent"

    def model_of(self, request: web.Request, body: JsonObject) -> object:
        """The model in the path."""
        return request.match_info.get("model")

    def texts(self, body: JsonObject) -> tuple[str, str]:
        """The text of the contents' parts and of the last user turn."""
        turns = [
            (c.get("role", "user"), " ".join(p.get("text", "") for p in c.get("parts", [])))
            for c in body.get("contents", [])
        ]
        prompt = "\n".join(text for _, text in turns)
        return prompt, last_user(turns, prompt)

    async def respond(self, call: Call) -> web.StreamResponse:
        """A ``GenerateContentResponse``."""
        prompt, question = self.texts(call.body)
        text = answer(call.model, question, call.accuracy)
        prompt_tokens, output_tokens = count_tokens(prompt), count_tokens(text)
        return json_response(
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": prompt_tokens,
                    "candidatesTokenCount": output_tokens,
                    "totalTokenCount": prompt_tokens + output_tokens,
                },
                "modelVersion": call.model,
                "responseId": call.request_id,
            }
        )


def _inputs(value: Any) -> list[str]:
    """Each input an embeddings request names: a string, or a list of them (or of tokens)."""
    if isinstance(value, list) and value and all(isinstance(v, str | list) for v in value):
        return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]
    if isinstance(value, list):  # one input as token ids
        return [" ".join(map(str, value))]
    return [str(value or "")]


class EmbeddingsFormat:
    """``POST /v1/embeddings``: one vector per input, with its index."""

    name = "embeddings"
    path = "/v1/embeddings"

    def model_of(self, request: web.Request, body: JsonObject) -> object:
        """The body's ``model``."""
        return body.get("model")

    def texts(self, body: JsonObject) -> tuple[str, str]:
        """All inputs joined, twice (there is no conversation)."""
        text = " ".join(_inputs(body.get("input")))
        return text, text

    async def respond(self, call: Call) -> web.StreamResponse:
        """An embeddings list, one item per input in order."""
        inputs = _inputs(call.body.get("input"))
        tokens = sum(count_tokens(text) for text in inputs)
        data = [
            {"object": "embedding", "index": index, "embedding": embed(text)}
            for index, text in enumerate(inputs)
        ]
        return json_response(
            {
                "object": "list",
                "data": data,
                "model": call.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


FORMATS: dict[str, ApiFormat] = {
    f.name: f
    for f in (ChatFormat(), ResponsesFormat(), MessagesFormat(), GeminiFormat(), EmbeddingsFormat())
}
