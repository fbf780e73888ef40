"""Chat completions on the gateway side: ``ChatFormat`` and the answer it composes.

The answer is deterministic (``replies.answer``) and shaped by the request
the way a real model's is: images acknowledged, a json_schema filled,
``max_tokens`` cutting the text (finish ``length``), a tool call when tools
are offered, reasoning when asked for, and bent by the answer scenarios
(S05, S06, S24...). Streamed requests get the same answer as server-sent
events (``streaming.py``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from batchrun.gateway.call import Call, MessagesBody, json_response, last_user, turns_of
from batchrun.gateway.replies import answer, count_tokens
from batchrun.gateway.streaming import stream_answer
from batchrun.wire import JsonObject

_RATELIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-remaining-requests": "4999",
    "x-ratelimit-reset-requests": "12ms",
}


@dataclass
class ChatReply:
    """One composed chat answer: the message, why it finished, and its token counts."""

    message: JsonObject
    finish: str | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0
    extra: JsonObject = field(default_factory=dict)

    def usage(self) -> JsonObject:
        """OpenAI's full usage object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }


def _images_of(content: Any) -> list[str]:
    """A short description of each image part: its URL, or the size of inlined data."""
    found = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            found.append(f"{len(url) * 3 // 4} bytes inline" if url.startswith("data:") else url)
    return found


def _fill_schema(response_format: JsonObject, text: str) -> JsonObject:
    """An object that fits a json_schema response format (strings carry the answer)."""
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    properties = schema.get("properties") or {"answer": {"type": "string"}}
    number = next((int(t) for t in text.replace(".", " ").split() if t.lstrip("-").isdigit()), 0)
    samples = {
        "string": text,
        "integer": number,
        "number": float(number),
        "boolean": True,
        "array": [],
        "object": {},
    }
    return {name: samples.get(str(prop.get("type")), text) for name, prop in properties.items()}


def _last_user_content(messages: list[Any]) -> Any:
    last = next(
        (m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None
    )
    return last.get("content") if last is not None else None


def _text(call: Call, question: str) -> str:
    """The answer text: acknowledging images, as JSON when a format is required."""
    text = answer(call.model, question, call.accuracy)
    images = _images_of(_last_user_content(call.body.get("messages") or []))
    if images:
        text = f"I see {len(images)} image(s) ({', '.join(images)}). {text}"
    structured = call.body.get("response_format")
    if isinstance(structured, dict) and structured.get("type") in ("json_object", "json_schema"):
        text = json.dumps(_fill_schema(structured, text))
    return text


def _tool_call(call: Call, question: str) -> list[JsonObject] | None:
    """A call of the first offered tool, unless tools are absent or turned off."""
    tools = call.body.get("tools")
    if not isinstance(tools, list) or not tools or call.body.get("tool_choice") == "none":
        return None
    function = tools[0].get("function", {}) if isinstance(tools[0], dict) else {}
    arguments = json.dumps({"question": question})
    return [
        {
            "id": f"call_{call.request_id[-12:]}",
            "type": "function",
            "function": {"name": function.get("name", "tool"), "arguments": arguments},
        }
    ]


def compose(call: Call) -> ChatReply:
    """The answer to a chat request, before any scenario bends it."""
    body = call.body
    messages = body.get("messages") or []
    turns = turns_of(messages)
    prompt = "\n".join(text for _, text in turns)
    question = last_user(turns, prompt)
    text = _text(call, question)
    reply = ChatReply(
        message={"role": "assistant", "content": text, "refusal": None},
        finish="stop",
        prompt_tokens=count_tokens(prompt) + 3 * len(messages),
        completion_tokens=count_tokens(text),
    )
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if isinstance(max_tokens, int) and 0 < max_tokens < reply.completion_tokens:
        reply.message["content"] = text[: max_tokens * 4]
        reply.completion_tokens, reply.finish = max_tokens, "length"
    tool_calls = _tool_call(call, question)
    if tool_calls is not None:
        reply.message["content"] = None
        reply.message["tool_calls"] = tool_calls
        reply.finish = "tool_calls"
    if body.get("reasoning_effort") or body.get("thinking") or body.get("reasoning"):
        reply.message["reasoning_content"] = f"Working it out step by step: {question}"
        reply.reasoning_tokens = count_tokens(reply.message["reasoning_content"])
        reply.completion_tokens += reply.reasoning_tokens
    return reply


def bend(reply: ChatReply, call: Call) -> ChatReply:
    """``reply`` as the non-streamed answer scenarios (S06, S24...) change it."""
    scenario = call.scenario
    if scenario == "S24":
        reply.finish = "max_tokens"
    elif scenario == "S24b":
        reply.finish = None
    elif scenario == "S24c":
        text = reply.message.get("content") or ""
        reply.message["content"] = ""
        reply.message["reasoning_content"] = f"Thinking about it: {text}"
        reply.reasoning_tokens = reply.completion_tokens
    elif scenario == "S24d":
        reply.finish = "content_filter"
    elif scenario == "S22b":
        reply.message["content"] = ""
    elif scenario == "S06":  # counted from the JSON of the messages, as a gateway estimates
        reply.prompt_tokens = count_tokens(json.dumps(call.body.get("messages") or []))
    return reply


def completion(reply: ChatReply, call: Call) -> JsonObject:
    """The ``chat.completion`` object of ``reply`` (without usage under S05 and S22b)."""
    payload: JsonObject = {
        "id": f"chatcmpl-{call.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "system_fingerprint": "fp_batchrun",
        "choices": [
            {"index": 0, "message": reply.message, "logprobs": None, "finish_reason": reply.finish}
        ],
        "usage": reply.usage(),
    }
    if call.scenario in ("S05", "S22b"):
        del payload["usage"]
    return payload


class ChatFormat(MessagesBody):
    """``POST /v1/chat/completions``."""

    name = "chat"
    path = "/v1/chat/completions"

    async def respond(self, call: Call) -> web.StreamResponse:
        """A chat completion, or its chunks when streamed."""
        reply = bend(compose(call), call)
        if call.streamed:
            usage = reply.usage() if call.scenario != "S05" else ChatReply({}, None, 0, 0).usage()
            return await stream_answer(call, reply.message.get("content") or "", usage)
        headers = _RATELIMIT_HEADERS if call.settings.ratelimit_headers else None
        return json_response(completion(reply, call), headers)
