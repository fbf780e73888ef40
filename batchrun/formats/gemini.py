"""Google's ``generateContent``: ``contents`` of parts, the key in ``x-goog-api-key``.

The finish reason is the first candidate's ``finishReason`` (``STOP``,
``MAX_TOKENS``, ``SAFETY``...), or, when the prompt itself was blocked and
no candidate came back, ``promptFeedback.blockReason``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from batchrun.formats.base import (
    Encoder,
    Format,
    JsonObject,
    Reply,
    Usage,
    as_dict,
    calls_json,
    compact_json,
    int_or_none,
    make_answer,
    split_system,
    str_or_none,
    total_of,
)
from batchrun.record import Answer


class GeminiFormat(Format):
    """``POST ../v1beta/models/{model}:generateContent``; the model id is in the path."""

    api = "gemini"
    key_headers: ClassVar[tuple[str, ...]] = ("x-goog-api-key",)

    def path(self, model_id: str) -> str:
        return f"../v1beta/models/{model_id}:generateContent"

    def encoder(self, model_id: str, params: JsonObject) -> Encoder:
        def encode(messages_json: bytes) -> bytes:
            return compact_json(_body(json.loads(messages_json), dict(params)))

        return encode

    def parse(self, payload: JsonObject, reply: Reply) -> Answer | None:
        candidates = payload.get("candidates") or []
        first = as_dict(candidates[0]) if candidates else {}
        parts = [p for p in as_dict(first.get("content")).get("parts") or [] if isinstance(p, dict)]
        meta = as_dict(payload.get("usageMetadata"))
        reason = first.get("finishReason") or as_dict(payload.get("promptFeedback")).get(
            "blockReason"
        )
        prompt = int_or_none(meta.get("promptTokenCount"))
        completion = int_or_none(meta.get("candidatesTokenCount"))
        return make_answer(
            reply,
            Usage(
                prompt,
                completion,
                total_of(prompt, completion, int_or_none(meta.get("totalTokenCount"))),
                int_or_none(meta.get("cachedContentTokenCount")),
                int_or_none(meta.get("thoughtsTokenCount")),
            ),
            response="".join(p.get("text", "") for p in parts if not p.get("thought")),
            finish_reason=str_or_none(reason),
            response_id=str_or_none(payload.get("responseId")),
            served_model=str_or_none(payload.get("modelVersion")),
            reasoning="".join(p.get("text", "") for p in parts if p.get("thought")) or None,
            tool_calls=calls_json([p["functionCall"] for p in parts if "functionCall" in p]),
        )


def _body(messages: list[JsonObject], params: JsonObject) -> JsonObject:
    """The request: turns as ``contents``, system text apart, sampling in ``generationConfig``."""
    system, rest = split_system(messages)
    config = {}
    if "temperature" in params:
        config["temperature"] = params.pop("temperature")
    if "max_tokens" in params:
        config["maxOutputTokens"] = params.pop("max_tokens")
    body: JsonObject = {
        "contents": [
            {"role": "model" if m["role"] == "assistant" else "user", "parts": _parts(m["content"])}
            for m in rest
        ]
    }
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    if config:
        body["generationConfig"] = config
    body.update(params)
    return body


def _parts(content: Any) -> list[JsonObject]:
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[JsonObject] = []
    for item in content:
        if item.get("type") == "text":
            parts.append({"text": item["text"]})
        elif item.get("type") == "image_url":
            url = item["image_url"]["url"]
            if url.startswith("data:") and ";base64," in url:
                mime, data = url[5:].split(";base64,", 1)
                parts.append({"inline_data": {"mime_type": mime, "data": data}})
            else:
                parts.append({"file_data": {"file_uri": url}})
    return parts
