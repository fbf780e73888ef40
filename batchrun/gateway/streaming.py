"""Streamed answers of the built-in gateway, with the quirks of real one-api/new-api gateways.

``stream_answer`` writes a chat completion as server-sent events: a role
chunk, the content a few words at a time, a finish chunk, a usage chunk
when asked for (``stream_options.include_usage``), and ``data: [DONE]``.
Scenarios (GATEWAYS.md section 8) bend it: S02b ``data:`` without a space,
S03 ``: PING`` comments and a usage chunk made up by the gateway, S04 usage
although not asked for, S18 an error event mid-stream, S19 ``[DONE]`` with
no finish reason, S20 the connection dropped, S21 a stall, S22 only
``[DONE]``, S24* other finish reasons, S30 a line longer than 64 KiB
(S30b the same, cut short).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

STREAM_SCENARIOS = frozenset(
    {"S02b", "S03", "S04", "S18", "S19", "S20", "S21", "S22", "S30", "S30b"}
)
_FINISH = {"S24": "max_tokens", "S24b": "tool_use", "S24c": "refusal", "S24d": "content_filter"}


def _chunk(
    request_id: str, model: str, delta: dict[str, Any], finish: str | None, with_usage_field: bool
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_batchrun",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if with_usage_field:
        chunk["usage"] = None
    return chunk


async def stream_answer(
    request: web.Request,
    *,
    request_id: str,
    model: str,
    text: str,
    usage: dict[str, Any],
    include_usage: bool,
    scenario: str | None,
    chunk_delay_s: float,
    stall_s: float,
) -> web.StreamResponse:
    """Write one streamed answer; returns the (already sent) response."""
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Oneapi-Request-Id": request_id,
        },
    )
    await response.prepare(request)
    prefix = b"data:" if scenario == "S02b" else b"data: "

    async def send(payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        await response.write(prefix + data.encode() + b"\n\n")
        if scenario == "S03":
            await response.write(b": PING\n\n")
        if chunk_delay_s:
            await asyncio.sleep(chunk_delay_s)

    if scenario == "S22":
        await send("[DONE]")
        await response.write_eof()
        return response
    if scenario in ("S30", "S30b"):
        text = "x" * 100_000 + " " + text
    words = text.split(" ")
    pieces = [
        " ".join(words[i : i + 3]) + (" " if i + 3 < len(words) else "")
        for i in range(0, len(words), 3)
    ]
    await send(_chunk(request_id, model, {"role": "assistant", "content": ""}, None, include_usage))
    for index, piece in enumerate(pieces):
        if scenario in ("S30", "S30b") and index == 0:
            piece = text[:100_001]
        elif scenario in ("S30", "S30b"):
            piece = piece
        await send(_chunk(request_id, model, {"content": piece}, None, include_usage))
        if index == len(pieces) // 2:
            if scenario == "S18":
                await send(
                    {
                        "error": {
                            "message": f"upstream error (request id: {request_id})",
                            "type": "upstream_error",
                            "param": "",
                            "code": "bad_response_status_code",
                        }
                    }
                )
                await send("[DONE]")
                await response.write_eof()
                return response
            if scenario in ("S19", "S30b"):
                await send("[DONE]")
                await response.write_eof()
                return response
            if scenario == "S20":
                if request.transport is not None:
                    request.transport.abort()
                return response
            if scenario == "S21":
                await asyncio.sleep(stall_s)
    finish = _FINISH.get(scenario or "", "stop")
    await send(_chunk(request_id, model, {}, finish, include_usage))
    if include_usage or scenario in ("S03", "S04"):
        chunk = _chunk(request_id, model, {}, None, False)
        chunk["choices"] = []
        chunk["usage"] = usage
        await send(chunk)
    await send("[DONE]")
    await response.write_eof()
    return response
