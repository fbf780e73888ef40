"""Anthropic's ``/messages``: the key in ``x-api-key``, system text apart, content blocks back.

Prompt tokens are the whole input, as the published usage splits it:
``input_tokens`` plus ``cache_read_input_tokens`` plus
``cache_creation_input_tokens`` (the two cache counts are nullable).
"""

from __future__ import annotations

import json
from typing import ClassVar

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

ANTHROPIC_VERSION = "2023-06-01"


class MessagesFormat(Format):
    """``POST messages``; ``max_tokens`` is required (1024 unless the job sets it)."""

    api = "messages"
    key_headers: ClassVar[tuple[str, ...]] = ("x-api-key",)

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"anthropic-version": ANTHROPIC_VERSION, **super().headers(api_key)}

    def encoder(self, model_id: str, params: JsonObject) -> Encoder:
        def encode(messages_json: bytes) -> bytes:
            merged = dict(params)
            system, rest = split_system(json.loads(messages_json))
            body = {"model": model_id, "messages": rest}
            body["max_tokens"] = merged.pop("max_tokens", 1024)
            if system:
                body["system"] = system
            body.update(merged)
            return compact_json(body)

        return encode

    def parse(self, payload: JsonObject, reply: Reply) -> Answer | None:
        blocks = [b for b in payload.get("content") or [] if isinstance(b, dict)]
        usage = as_dict(payload.get("usage"))
        cache_read = int_or_none(usage.get("cache_read_input_tokens"))
        fresh = int_or_none(usage.get("input_tokens"))
        written = int_or_none(usage.get("cache_creation_input_tokens"))
        prompt = None if fresh is None else fresh + (cache_read or 0) + (written or 0)
        completion = int_or_none(usage.get("output_tokens"))
        return make_answer(
            reply,
            Usage(prompt, completion, total_of(prompt, completion, None), cache_read),
            response="".join(b.get("text", "") for b in blocks if b.get("type") == "text"),
            finish_reason=str_or_none(payload.get("stop_reason")),
            response_id=str_or_none(payload.get("id")),
            served_model=str_or_none(payload.get("model")),
            reasoning="".join(b.get("thinking", "") for b in blocks if b.get("type") == "thinking")
            or None,
            tool_calls=calls_json([b for b in blocks if b.get("type") == "tool_use"]),
        )
