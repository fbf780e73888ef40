"""The built-in gateway's answers in the other API formats: Responses, Claude, Gemini, embeddings.

``render_other`` promises an answer body in the shape the real endpoint
sends, with the same deterministic text (and usage) as chat completions.
Embeddings are a unit vector derived from the input text.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
from typing import Any

from batchrun.gateway.replies import answer, count_tokens

EMBEDDING_DIMENSIONS = 16


def _texts(body: dict[str, Any], api: str) -> tuple[str, str]:
    """The whole prompt and the last user text of a request in ``api``'s shape."""
    if api == "gemini":
        turns = [
            (c.get("role", "user"), " ".join(p.get("text", "") for p in c.get("parts", [])))
            for c in body.get("contents", [])
        ]
    elif api == "embeddings":
        text = body.get("input")
        text = " ".join(text) if isinstance(text, list) else str(text or "")
        return text, text
    else:
        items = body.get("input") if api == "responses" else body.get("messages")
        if isinstance(items, str):
            return items, items
        turns = [(m.get("role", "user"), _content(m.get("content"))) for m in items or []]
    prompt = "\n".join(text for _, text in turns)
    last = next((text for role, text in reversed(turns) if role == "user"), prompt)
    return prompt, last


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def embed(text: str) -> list[float]:
    """A deterministic unit vector for ``text``."""
    digest = hashlib.sha256(text.encode()).digest() * 2
    values = [v / 2**31 for v in struct.unpack(f"<{EMBEDDING_DIMENSIONS}i", digest)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def render_other(
    api: str, body: dict[str, Any], model: str, request_id: str, accuracy: float
) -> dict[str, Any]:
    """The answer body of one request in ``api``'s format."""
    prompt, last = _texts(body, api)
    prompt_tokens = count_tokens(prompt)
    if api == "embeddings":
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": embed(last)}],
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
    text = answer(model, last, accuracy)
    output_tokens = count_tokens(text)
    if api == "responses":
        return {
            "id": f"resp_{request_id}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": model,
            "output": [
                {
                    "type": "message",
                    "id": f"msg_{request_id}",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
            "usage": {
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt_tokens + output_tokens,
            },
        }
    if api == "messages":
        return {
            "id": f"msg_{request_id}",
            "type": "message",
            "role": "assistant",
            "model": model,
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
    return {
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
        "modelVersion": model,
        "responseId": request_id,
    }
