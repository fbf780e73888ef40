"""OpenAI's ``/responses``: ``input`` for messages, the answer as typed output items.

The finish reason is the body's ``status`` (``completed``), or the reason
in ``incomplete_details`` (``max_output_tokens``, ``content_filter``); a
``refusal`` content item is kept as the response text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from batchrun.formats.base import (
    Encoder,
    Format,
    JsonObject,
    Reply,
    as_dict,
    calls_json,
    compact_json,
    make_answer,
    str_or_none,
    usage_of,
)
from batchrun.record import Answer

_TEXT = ("output_text", "text")


class ResponsesFormat(Format):
    """``POST responses``; ``max_tokens`` is sent as ``max_output_tokens``."""

    api = "responses"

    def encoder(self, model_id: str, params: JsonObject) -> Encoder:
        return _encoder(model_id, params)

    def parse(self, payload: JsonObject, reply: Reply) -> Answer | None:
        texts: list[str] = []
        refusals: list[str] = []
        reasoning: list[str] = []
        calls: list[Any] = []
        for item in payload.get("output") or []:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                parts = [c for c in item.get("content") or [] if isinstance(c, dict)]
                texts += [c.get("text") or "" for c in parts if c.get("type") in _TEXT]
                refusals += [c.get("refusal") or "" for c in parts if c.get("type") == "refusal"]
            elif item.get("type") == "reasoning":
                reasoning += [
                    s.get("text", "") for s in item.get("summary") or [] if isinstance(s, dict)
                ]
            elif item.get("type") == "function_call":
                calls.append(item)
        status = str_or_none(payload.get("status"))
        refusal = "".join(refusals)
        text = "".join(texts) if texts or status == "completed" else None
        reason = str_or_none(as_dict(payload.get("incomplete_details")).get("reason"))
        finish = status if status == "completed" else reason or status
        refused = bool(refusal) and not text
        if text is None and finish is None and not refused:
            return None
        return make_answer(
            reply,
            usage_of(payload.get("usage"), fill_total=True),
            response=refusal if refused else text,
            finish_reason=finish,
            refused=refused,
            response_id=str_or_none(payload.get("id")),
            served_model=str_or_none(payload.get("model")),
            reasoning="".join(reasoning) or None,
            tool_calls=calls_json(calls),
        )


def _encoder(model_id: str, params: JsonObject) -> Callable[[bytes], bytes]:
    def encode(messages_json: bytes) -> bytes:
        merged = dict(params)
        if "max_tokens" in merged:
            merged["max_output_tokens"] = merged.pop("max_tokens")
        return compact_json({"model": model_id, "input": json.loads(messages_json), **merged})

    return encode
