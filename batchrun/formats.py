"""The API formats behind one job file: request bodies, paths and answers for each.

``chat`` is OpenAI's ``/chat/completions`` (its body is assembled in
``plan.py`` for speed); ``responses`` is ``/responses``; ``messages`` is
Claude's ``/messages``; ``gemini`` is ``/v1beta/models/{model}:generateContent``;
``embeddings`` is ``/embeddings``. ``build_body`` promises the exact JSON
for a request of a format, and ``parse_answer`` the same ``Completion``
fields whatever the format, so the results schema never changes.
"""

from __future__ import annotations

import json
from typing import Any, Literal

Api = Literal["chat", "responses", "messages", "gemini", "embeddings"]
ANTHROPIC_VERSION = "2023-06-01"


def api_path(api: Api, model_id: str) -> str:
    """The path of a request, relative to the base URL (``.../v1/``)."""
    if api == "chat":
        return "chat/completions"
    if api == "gemini":
        return f"../v1beta/models/{model_id}:generateContent"
    return api


def api_headers(api: Api, api_key: str | None) -> dict[str, str]:
    """Headers a format needs beyond the Bearer key."""
    if api == "messages":
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers
    if api == "gemini" and api_key:
        return {"x-goog-api-key": api_key}
    return {}


def _split(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    system = "\n\n".join(
        str(m["content"]) for m in messages if m["role"] in ("system", "developer")
    )
    rest = [m for m in messages if m["role"] not in ("system", "developer")]
    return system or None, rest


def _last_user(messages: list[dict[str, Any]]) -> Any:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def build_body(api: Api, model_id: str, params: dict[str, Any], messages_json: bytes) -> bytes:
    """The JSON body of one request in ``api``'s format (not ``chat``)."""
    messages: list[dict[str, Any]] = json.loads(messages_json)
    params = dict(params)
    body: dict[str, Any]
    if api == "responses":
        if "max_tokens" in params:
            params["max_output_tokens"] = params.pop("max_tokens")
        body = {"model": model_id, "input": messages, **params}
    elif api == "messages":
        system, rest = _split(messages)
        body = {"model": model_id, "messages": rest, "max_tokens": params.pop("max_tokens", 1024)}
        if system:
            body["system"] = system
        body.update(params)
    elif api == "gemini":
        system, rest = _split(messages)
        config = {}
        if "temperature" in params:
            config["temperature"] = params.pop("temperature")
        if "max_tokens" in params:
            config["maxOutputTokens"] = params.pop("max_tokens")
        body = {
            "contents": [
                {
                    "role": "model" if m["role"] == "assistant" else "user",
                    "parts": _gemini_parts(m["content"]),
                }
                for m in rest
            ]
        }
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if config:
            body["generationConfig"] = config
        body.update(params)
    elif api == "embeddings":
        params.pop("max_tokens", None)
        params.pop("temperature", None)
        body = {"model": model_id, "input": _last_user(messages), **params}
    else:
        raise ValueError(f"no body builder for api {api!r}")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _gemini_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[dict[str, Any]] = []
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


class Answer(dict[str, Any]):
    """The fields of an answer, named as ``Completion``'s."""


def parse_answer(api: Api, payload: dict[str, Any]) -> Answer:
    """Text, finish reason, usage, ids and extras from an answer in ``api``'s format."""
    answer = Answer()
    if api == "responses":
        texts, reasoning, calls = [], [], []
        for item in payload.get("output") or []:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                texts += [
                    c.get("text", "")
                    for c in item.get("content") or []
                    if isinstance(c, dict) and c.get("type") in ("output_text", "text")
                ]
            elif item.get("type") == "reasoning":
                reasoning += [
                    s.get("text", "") for s in item.get("summary") or [] if isinstance(s, dict)
                ]
            elif item.get("type") == "function_call":
                calls.append(item)
        status = payload.get("status")
        details = payload.get("incomplete_details") or {}
        answer.update(
            text="".join(texts) if texts or status == "completed" else None,
            finish_reason="stop" if status == "completed" else details.get("reason") or status,
            usage=payload.get("usage") or {},
            reasoning="".join(reasoning) or None,
            tool_calls=json.dumps(calls) if calls else None,
        )
    elif api == "messages":
        blocks = [b for b in payload.get("content") or [] if isinstance(b, dict)]
        calls = [b for b in blocks if b.get("type") == "tool_use"]
        usage = payload.get("usage") or {}
        answer.update(
            text="".join(b.get("text", "") for b in blocks if b.get("type") == "text"),
            finish_reason=payload.get("stop_reason"),
            usage={
                "input_tokens": (usage.get("input_tokens") or 0)
                + (usage.get("cache_read_input_tokens") or 0),
                "output_tokens": usage.get("output_tokens"),
                "input_tokens_details": {"cached_tokens": usage.get("cache_read_input_tokens")},
            },
            reasoning="".join(b.get("thinking", "") for b in blocks if b.get("type") == "thinking")
            or None,
            tool_calls=json.dumps(calls) if calls else None,
        )
    elif api == "gemini":
        candidates = payload.get("candidates") or []
        first = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
        parts = (first.get("content") or {}).get("parts") or []
        meta = payload.get("usageMetadata") or {}
        calls = [p["functionCall"] for p in parts if isinstance(p, dict) and "functionCall" in p]
        answer.update(
            text="".join(
                p.get("text", "") for p in parts if isinstance(p, dict) and not p.get("thought")
            ),
            finish_reason=_gemini_finish(first.get("finishReason")),
            usage={
                "prompt_tokens": meta.get("promptTokenCount"),
                "completion_tokens": meta.get("candidatesTokenCount"),
                "total_tokens": meta.get("totalTokenCount"),
                "prompt_tokens_details": {"cached_tokens": meta.get("cachedContentTokenCount")},
                "completion_tokens_details": {"reasoning_tokens": meta.get("thoughtsTokenCount")},
            },
            reasoning="".join(
                p.get("text", "") for p in parts if isinstance(p, dict) and p.get("thought")
            )
            or None,
            tool_calls=json.dumps(calls) if calls else None,
            model=payload.get("modelVersion"),
            id=payload.get("responseId"),
        )
    elif api == "embeddings":
        data = payload.get("data") or []
        vector = data[0].get("embedding") if data and isinstance(data[0], dict) else None
        answer.update(
            text=None,
            finish_reason="stop" if vector is not None else None,
            usage=payload.get("usage") or {},
            embedding=vector if isinstance(vector, list) else None,
        )
    answer.setdefault("model", payload.get("model"))
    answer.setdefault("id", payload.get("id"))
    return answer


def _gemini_finish(reason: Any) -> str | None:
    if reason is None:
        return None
    return {"STOP": "stop", "MAX_TOKENS": "length"}.get(str(reason), "content_filter")
