"""OpenAI's ``/embeddings``: the last user turn as ``input``, one vector back."""

from __future__ import annotations

import json

from batchrun.formats.base import (
    Encoder,
    Format,
    JsonObject,
    Reply,
    compact_json,
    last_user_content,
    make_answer,
    str_or_none,
    usage_of,
)
from batchrun.record import Answer

# Sampling parameters a job may set for its chat models that an embedding request refuses.
_DROPPED = ("max_tokens", "temperature")


class EmbeddingsFormat(Format):
    """``POST embeddings``; the answer is a vector, its text null."""

    api = "embeddings"

    def encoder(self, model_id: str, params: JsonObject) -> Encoder:
        kept = {name: value for name, value in params.items() if name not in _DROPPED}

        def encode(messages_json: bytes) -> bytes:
            text = last_user_content(json.loads(messages_json))
            return compact_json({"model": model_id, "input": text, **kept})

        return encode

    def parse(self, payload: JsonObject, reply: Reply) -> Answer | None:
        data = payload.get("data") or []
        vector = data[0].get("embedding") if data and isinstance(data[0], dict) else None
        if vector is None:
            return None
        answer = make_answer(
            reply,
            usage_of(payload.get("usage"), fill_total=True),
            response=None,
            finish_reason=None,  # the API gives none: the raw column stays null
            response_id=str_or_none(payload.get("id")),
            served_model=str_or_none(payload.get("model")),
            embedding=vector if isinstance(vector, list) else None,
        )
        answer.finish_reason = "stop"
        return answer
