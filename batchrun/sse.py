"""Reading a streamed chat completion (server-sent events) the way gateways really send it.

``split_lines`` promises whole lines of any length from arbitrary chunks
(one-api's 64 KiB line limit is a bug to survive, not a rule to copy).
``StreamAssembler`` follows GATEWAYS.md section 9: comments, blank and
``event:``/``id:`` lines are ignored; ``data:`` is taken with or without a
space; any event carrying a non-null ``error`` raises; text, reasoning,
refusal and tool-call deltas are gathered apart; chunks without
choices are skipped unless they carry usage, which is taken from whichever
chunk has it; and an answer is complete only if some choice finished:
``[DONE]`` alone proves nothing, since gateways append it after a cut.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from batchrun.wire import JsonObject


async def split_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Lines (without their end) from a byte stream, however long they are."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        if b"\n" not in chunk:
            continue
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r")
    if pending:
        yield pending.rstrip(b"\r")


class StreamError(Exception):
    """An event in the stream carried an error object."""

    def __init__(self, payload: JsonObject) -> None:
        super().__init__(str(payload.get("error")))
        self.payload = payload


@dataclass
class StreamAssembler:
    """Builds one answer out of the events of a stream."""

    started: float = field(default_factory=time.perf_counter)
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, JsonObject] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: JsonObject | None = None
    response_id: str | None = None
    model: str | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    done: bool = False

    def feed(self, line: bytes) -> None:
        """Take one line of the stream; raise ``StreamError`` on an error event."""
        if not line or line.startswith(b":"):
            return
        if not line.startswith(b"data:"):
            return  # event:, id:, retry: and anything else carry nothing for us
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return
        try:
            payload = json.loads(data)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        if payload.get("error") is not None:
            raise StreamError(payload)
        self.response_id = self.response_id or _str(payload.get("id"))
        self.model = self.model or _str(payload.get("model"))
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta: JsonObject = choice["delta"] if isinstance(choice.get("delta"), dict) else {}
        content = delta.get("content")
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(content, str) and content:
            self.text.append(content)
            self._token()
        if isinstance(thought, str) and thought:
            self.reasoning.append(thought)
            self._token()
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self.refusal.append(refusal)
            self._token()
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                self._tool_call(call)
                self._token()
        if choice.get("finish_reason") is not None:
            self.finish_reason = str(choice["finish_reason"])

    def _token(self) -> None:
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        self.last_token_at = now

    def _tool_call(self, call: JsonObject) -> None:
        index = call.get("index", len(self.tool_calls))
        entry = self.tool_calls.setdefault(
            int(index) if isinstance(index, int) else len(self.tool_calls),
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        entry["id"] = call.get("id") or entry["id"]
        function: JsonObject = call["function"] if isinstance(call.get("function"), dict) else {}
        entry["function"]["name"] += function.get("name") or ""
        entry["function"]["arguments"] += function.get("arguments") or ""

    @property
    def complete(self) -> bool:
        """Whether some choice finished (the only proof that the answer is whole)."""
        return self.finish_reason is not None

    def elapsed(self) -> float:
        """Seconds from sending until now."""
        return time.perf_counter() - self.started

    def ttft_s(self) -> float | None:
        """Seconds from sending to the first token."""
        return None if self.first_token_at is None else self.first_token_at - self.started

    def last_token_s(self) -> float | None:
        """Seconds from sending to the last token."""
        return None if self.last_token_at is None else self.last_token_at - self.started

    def tool_calls_json(self) -> str | None:
        """The tool calls the model made, as JSON, or None."""
        if not self.tool_calls:
            return None
        return json.dumps([self.tool_calls[i] for i in sorted(self.tool_calls)])


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
