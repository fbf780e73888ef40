"""Streamed chat answers of the built-in gateway, with the quirks of real one-api/new-api gateways.

``stream_answer`` writes a chat completion as server-sent events: a role
chunk, the content a few words at a time, a finish chunk, a usage chunk
when asked for (``stream_options.include_usage``), and ``data: [DONE]``.
Scenarios (GATEWAYS.md section 8) bend it: S02b ``data:`` without a space,
S03 ``: PING`` comments and a usage chunk made up by the gateway, S04 usage
although not asked for, S18 an error event mid-stream, S19 ``[DONE]`` with
no finish reason, S20 the connection dropped, S21 a stall, S22 only
``[DONE]``, S22b an empty ``delta`` that finishes and no usage, S24* other
finish reasons, S30 a line longer than 64 KiB
(S30b the same, cut short).
"""

from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp import web

from batchrun.gateway.call import Call
from batchrun.wire import JsonObject

_FINISH = {"S24": "max_tokens", "S24b": "tool_use", "S24c": "refusal", "S24d": "content_filter"}
_LONG = ("S30", "S30b")


class EventStream:
    """A prepared ``text/event-stream`` response that writes ``data:`` events."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "X-Oneapi-Request-Id": call.request_id,
            },
        )
        self.prefix = b"data:" if call.scenario == "S02b" else b"data: "
        self.delay_s = call.settings.stream_chunk_ms / 1000.0

    async def open(self) -> None:
        """Send the status and headers."""
        await self.response.prepare(self.call.request)

    async def send(self, payload: JsonObject | str, event: str | None = None) -> None:
        """One event (a JSON object, or ``[DONE]``), then the scenario's comment and pace."""
        data = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
        head = f"event: {event}\n".encode() if event else b""
        await self.response.write(head + self.prefix + data + b"\n\n")
        if self.call.scenario == "S03":
            await self.response.write(b": PING\n\n")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)

    async def close(self, done: bool = True) -> web.StreamResponse:
        """``[DONE]`` (unless ``done`` is False) and the end of the body."""
        if done:
            await self.send("[DONE]")
        await self.response.write_eof()
        return self.response


def _chunk(call: Call, delta: JsonObject, finish: str | None) -> JsonObject:
    chunk: JsonObject = {
        "id": f"chatcmpl-{call.request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": call.model,
        "system_fingerprint": "fp_batchrun",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if _include_usage(call):
        chunk["usage"] = None
    return chunk


def _include_usage(call: Call) -> bool:
    options = call.body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def pieces_of(text: str) -> list[str]:
    """``text`` in pieces of three words, spaces kept, as a model streams it."""
    words = text.split(" ")
    return [
        " ".join(words[i : i + 3]) + (" " if i + 3 < len(words) else "")
        for i in range(0, len(words), 3)
    ]


async def _midway(stream: EventStream) -> bool:
    """The mid-stream scenarios (S18 S19 S20 S21 S30b); True when the stream has ended."""
    call, scenario = stream.call, stream.call.scenario
    if scenario == "S18":
        error = {
            "message": f"upstream error (request id: {call.request_id})",
            "type": "upstream_error",
            "param": "",
            "code": "bad_response_status_code",
        }
        await stream.send({"error": error})
        await stream.close()
        return True
    if scenario in ("S19", "S30b"):
        await stream.close()
        return True
    if scenario == "S20":
        if call.request.transport is not None:
            call.request.transport.abort()
        return True
    if scenario == "S21":
        await asyncio.sleep(call.settings.stall_s)
    return False


async def stream_answer(call: Call, text: str, usage: JsonObject) -> web.StreamResponse:
    """Write one streamed chat answer of ``text``; returns the (already sent) response."""
    stream = EventStream(call)
    await stream.open()
    if call.scenario == "S22":
        return await stream.close()
    if call.scenario == "S22b":
        await stream.send(_chunk(call, {}, "stop"))
        return await stream.close()
    if call.scenario in _LONG:
        text = "x" * 100_000 + " " + text
    pieces = pieces_of(text)
    await stream.send(_chunk(call, {"role": "assistant", "content": ""}, None))
    for index, piece in enumerate(pieces):
        first_long = call.scenario in _LONG and index == 0
        await stream.send(_chunk(call, {"content": text[:100_001] if first_long else piece}, None))
        if index == len(pieces) // 2 and await _midway(stream):
            return stream.response
    await stream.send(_chunk(call, {}, _FINISH.get(call.scenario or "", "stop")))
    if _include_usage(call) or call.scenario in ("S03", "S04"):
        chunk = _chunk(call, {}, None)
        chunk.pop("usage", None)
        chunk["choices"] = []
        chunk["usage"] = usage
        await stream.send(chunk)
    return await stream.close()
