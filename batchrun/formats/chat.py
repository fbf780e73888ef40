"""OpenAI's ``/chat/completions``: the format most gateways speak, and the only one streamed.

The body is the hot path of a run, so it is never built from a dict per
request: ``encoder`` precomputes, per model, the bytes before the messages
(``{"model":...,"messages":``) and after them (the parameters), and a
request is those two around its messages JSON. A stream is read by
``sse.StreamAssembler`` and counts only if some choice finished and it
holds something (an empty stream is an ``EmptyAnswer``, as an empty body
is). A ``refusal`` (structured outputs) is kept as the response text, its
finish reason ``content_filter``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import ClassVar

from batchrun.classify import classify_error
from batchrun.errors import (
    EmptyAnswer,
    FatalRequestError,
    ModelUnavailable,
    RowError,
    StreamCut,
)
from batchrun.formats.base import (
    Encoder,
    Format,
    JsonObject,
    Reply,
    as_dict,
    is_empty,
    make_answer,
    str_or_none,
    usage_of,
)
from batchrun.record import Answer
from batchrun.sse import StreamAssembler, StreamError


class _ChatBody:
    """The bytes around the messages of one model's requests."""

    __slots__ = ("head", "tail")

    def __init__(self, model_id: str, params: JsonObject) -> None:
        self.head = b'{"model":' + json.dumps(model_id).encode() + b',"messages":'
        self.tail = (
            b"".join(
                b"," + json.dumps(name).encode() + b":" + json.dumps(value).encode()
                for name, value in params.items()
            )
            + b"}"
        )

    def encode(self, messages_json: bytes) -> bytes:
        return self.head + messages_json + self.tail


class ChatFormat(Format):
    """``POST chat/completions`` with ``messages``; answers in ``choices[0]``."""

    api = "chat"
    no_answer: ClassVar[str] = "the gateway answered 200 without choices: "

    def path(self, model_id: str) -> str:
        return "chat/completions"

    def encoder(self, model_id: str, params: JsonObject) -> Encoder:
        return _ChatBody(model_id, params).encode

    def parse(self, payload: JsonObject, reply: Reply) -> Answer | None:
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        choice = choices[0]
        message = as_dict(choice.get("message"))
        tool_calls = message.get("tool_calls")
        content = str_or_none(message.get("content"))
        refusal = str_or_none(message.get("refusal"))
        refused = bool(refusal) and not content
        return make_answer(
            reply,
            usage_of(payload.get("usage")),
            response=refusal if refused else content,
            finish_reason=str_or_none(choice.get("finish_reason")),
            refused=refused,
            response_id=str_or_none(payload.get("id")),
            served_model=str_or_none(payload.get("model")),
            reasoning=str_or_none(message.get("reasoning_content") or message.get("reasoning")),
            tool_calls=json.dumps(tool_calls)
            if isinstance(tool_calls, list) and tool_calls
            else None,
        )

    async def read_stream(
        self, lines: AsyncIterator[bytes], reply: Reply, started: float, secrets: list[str]
    ) -> Answer:
        """A streamed answer; an error event or a stream without a finish raises."""
        assembler = StreamAssembler(started=started)
        status = reply.http_status
        try:
            async for line in lines:
                assembler.feed(line)
        except StreamError as exc:
            raw = json.dumps(exc.payload, ensure_ascii=False).encode()
            error = classify_error(200, {}, raw, exc.payload, secrets)
            if isinstance(error, RowError | ModelUnavailable | FatalRequestError):
                raise error from None
            raise StreamCut(
                f"error event in the stream: {error.message}", http_status=status, code=error.code
            ) from None
        except StreamCut as exc:  # the transport's cut or silence, told with how far it got
            raise StreamCut(
                f"{exc.message} after {len(assembler.text)} chunks", http_status=status
            ) from None
        if not assembler.complete:
            ending = "[DONE] without" if assembler.done else "the connection closed without"
            raise StreamCut(
                f"the stream ended ({ending} a finish reason) after "
                f"{sum(len(t) for t in assembler.text)} characters; a partial answer is not kept",
                http_status=status,
            )
        text, refusal = "".join(assembler.text), "".join(assembler.refusal)
        answer = make_answer(
            reply._replace(latency_s=assembler.elapsed()),
            usage_of(assembler.usage),
            response=text or refusal,
            finish_reason=assembler.finish_reason,
            refused=bool(refusal) and not text,
            response_id=assembler.response_id,
            served_model=assembler.model,
            reasoning="".join(assembler.reasoning) or None,
            tool_calls=assembler.tool_calls_json(),
            ttft_s=assembler.ttft_s(),
            time_to_last_token_s=assembler.last_token_s(),
        )
        if is_empty(answer):
            raise EmptyAnswer(
                f"the stream finished ({assembler.finish_reason}) with nothing in it: no "
                "content, tool call, refusal nor usage",
                http_status=status,
            )
        return answer
