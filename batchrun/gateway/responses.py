"""OpenAI's Responses API on the gateway side: ``ResponsesFormat``, plain and streamed.

A plain answer is one ``response`` object in the published schema. A
streamed one is the event sequence the OpenAI SDK reads, each event with
its ``type`` and ``sequence_number``: response.created, output_item.added,
content_part.added, output_text.delta (a few words each),
output_text.done, content_part.done, output_item.done, response.completed
(the whole response, text and usage).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from batchrun.gateway.call import Call, json_response, last_user, turns_of
from batchrun.gateway.replies import answer, count_tokens
from batchrun.gateway.streaming import EventStream, pieces_of
from batchrun.wire import JsonObject


def _usage(prompt_tokens: int, output_tokens: int) -> JsonObject:
    return {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_tokens + output_tokens,
    }


def _message(call: Call, text: str | None) -> JsonObject:
    """The output message item; in progress and empty while ``text`` is None."""
    return {
        "type": "message",
        "id": f"msg_{call.request_id}",
        "role": "assistant",
        "status": "in_progress" if text is None else "completed",
        "content": [] if text is None else [_part(text)],
    }


def _part(text: str) -> JsonObject:
    return {"type": "output_text", "text": text, "annotations": []}


def response_object(call: Call, text: str | None, usage: JsonObject | None) -> JsonObject:
    """The ``response`` object: completed with ``text`` and ``usage``, or in progress."""
    payload: JsonObject = {
        "id": f"resp_{call.request_id}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress" if text is None else "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": call.body.get("instructions"),
        "max_output_tokens": call.body.get("max_output_tokens"),
        "model": call.model,
        "output": [] if text is None else [_message(call, text)],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }
    return payload


class ResponsesFormat:
    """``POST /v1/responses``."""

    name = "responses"
    path = "/v1/responses"

    def model_of(self, request: web.Request, body: JsonObject) -> object:
        """The body's ``model``."""
        return body.get("model")

    def texts(self, body: JsonObject) -> tuple[str, str]:
        """``input`` as a string, or the text of its messages and the last user one."""
        items = body.get("input")
        if isinstance(items, str):
            return items, items
        turns = turns_of(items)
        prompt = "\n".join(text for _, text in turns)
        return prompt, last_user(turns, prompt)

    async def respond(self, call: Call) -> web.StreamResponse:
        """A response object, or its events when streamed."""
        prompt, question = self.texts(call.body)
        text = answer(call.model, question, call.accuracy)
        usage = _usage(count_tokens(prompt), count_tokens(text))
        if call.streamed:
            return await _stream(call, text, usage)
        return json_response(response_object(call, text, usage))


async def _stream(call: Call, text: str, usage: JsonObject) -> web.StreamResponse:
    """Write the events of one streamed response."""
    stream = EventStream(call)
    await stream.open()
    sequence = 0
    item = {"item_id": f"msg_{call.request_id}", "output_index": 0, "content_index": 0}

    async def emit(kind: str, **fields: Any) -> None:
        nonlocal sequence
        await stream.send({"type": kind, "sequence_number": sequence, **fields}, event=kind)
        sequence += 1

    await emit("response.created", response=response_object(call, None, None))
    await emit("response.output_item.added", output_index=0, item=_message(call, None))
    await emit("response.content_part.added", **item, part=_part(""))
    for piece in pieces_of(text):
        await emit("response.output_text.delta", **item, delta=piece, logprobs=[])
    await emit("response.output_text.done", **item, text=text, logprobs=[])
    await emit("response.content_part.done", **item, part=_part(text))
    await emit("response.output_item.done", output_index=0, item=_message(call, text))
    await emit("response.completed", response=response_object(call, text, usage))
    return await stream.close(done=False)
