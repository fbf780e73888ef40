"""The ``/rerank`` API (Cohere/Jina shape, as new-api serves it): a query and documents in.

The query is the prompt's text; the documents are the row's list from
``prompt.documents_column``; ``top_n`` and the rest come from ``params``.
The answer's ``results: [{index, relevance_score}]`` become ``ranking``
(document indices, best first) and ``relevance_scores`` (in the same order).
"""

from __future__ import annotations

from typing import Any

from batchrun.formats.base import (
    Encoder,
    Format,
    JsonObject,
    Reply,
    as_dict,
    compact_json,
    int_or_none,
    str_or_none,
    usage_of,
)
from batchrun.formats.media import media_answer, prompt_documents, prompt_text
from batchrun.record import Answer

_DROPPED = ("max_tokens", "temperature")


class RerankFormat(Format):
    """``POST rerank``; the answer is a ranking of the documents."""

    api = "rerank"
    token_output = False
    no_answer = "the gateway answered 200 without a ranking: "

    def path(self, model_id: str) -> str:
        return "rerank"

    def encoder(self, model_id: str, params: JsonObject) -> Encoder:
        kept = {k: v for k, v in params.items() if k not in _DROPPED}

        def encode(messages_json: bytes) -> bytes:
            body = {
                "model": model_id,
                "query": prompt_text(messages_json),
                "documents": prompt_documents(messages_json),
                **kept,
            }
            return compact_json(body)

        return encode

    def parse(self, payload: JsonObject, reply: Reply) -> Answer | None:
        results = payload.get("results")
        if not isinstance(results, list):
            return None
        pairs = [(_score(r), int_or_none(as_dict(r).get("index"))) for r in results]
        ranked = sorted(((s, i) for s, i in pairs if i is not None), key=lambda p: -p[0])
        meta = as_dict(payload.get("meta"))
        usage = payload.get("usage") or meta.get("tokens") or {}
        tokens = usage_of(usage, fill_total=True)
        if tokens.prompt is not None and tokens.completion is None:
            tokens = tokens._replace(completion=0)  # a ranking has no output tokens
        return media_answer(
            reply,
            tokens,
            ranking=[index for _, index in ranked],
            relevance_scores=[score for score, _ in ranked],
            response_id=str_or_none(payload.get("id")),
            served_model=str_or_none(payload.get("model")),
        )


def _score(result: Any) -> float:
    score = as_dict(result).get("relevance_score")
    return float(score) if isinstance(score, int | float) else 0.0
