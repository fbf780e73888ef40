"""What every API format is: the ``Format`` base, the ``Api`` names, and the parts they share.

A format owns one API's side of the wire: the path of a request, the
headers its key goes in, the exact JSON body, and the parsing of an answer
(and, for chat, of a stream) into the one ``Answer`` record. The HTTP facts
every answer carries (status, latency, request id, rate-limit headers) are
read once into a ``Reply`` by ``reply_of`` (the request id from whichever
header the gateway uses, the upstream model where the gateway names it);
usage in any of the shapes gateways send is read by ``usage_of``;
``make_answer`` tells the finish reason in the one vocabulary of
``finish.py`` and keeps the raw one. ``Format.answer`` promises that an
answer is never empty: one with no content, tool call, refusal nor usage is
an ``EmptyAnswer``, which is retried.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, ClassVar, Literal, NamedTuple

from multidict import CIMultiDict, CIMultiDictProxy

from batchrun.classify import answer_payload, snippet
from batchrun.errors import EmptyAnswer, ServerError
from batchrun.formats.finish import normalise_finish
from batchrun.ratelimits import RateLimitAdvice, read_advice
from batchrun.record import Answer
from batchrun.wire import JsonObject as JsonObject  # formats name raw JSON by it

# The one list of API formats a job can name (``api:``); ``FORMATS`` has an object for each.
Api = Literal[
    "chat",
    "responses",
    "messages",
    "gemini",
    "embeddings",
    "images",
    "speech",
    "transcription",
    "translation",
    "rerank",
    "video",
    "videos",
]
# Builds the exact body of one request from its rendered messages (JSON bytes).
Encoder = Callable[[bytes], bytes]
# A JSON object as it came off the wire (or as a job's params go onto it): not typed further.

# Where gateways put the id of a request, the gateway's own first: one-api and new-api,
# LiteLLM, then the upstream's (OpenAI, Anthropic, Google); Cloudflare's ray id last.
REQUEST_ID_HEADERS = (
    "x-oneapi-request-id",
    "x-litellm-call-id",
    "x-request-id",
    "request-id",
    "x-goog-request-id",
    "cf-ray",
)
# Where a gateway names the upstream model it routed an alias to.
UPSTREAM_MODEL_HEADERS = ("x-litellm-model-name",)


class Reply(NamedTuple):
    """The HTTP facts of one answer, whatever its format."""

    http_status: int
    latency_s: float
    gateway_request_id: str | None
    ratelimit: RateLimitAdvice | None
    upstream_model: str | None = None


class Usage(NamedTuple):
    """Token counts of one answer; None where the gateway did not say."""

    prompt: int | None = None
    completion: int | None = None
    total: int | None = None
    cached: int | None = None
    reasoning: int | None = None


NO_USAGE = Usage()


class Format(ABC):
    """One API format. Subclasses set ``api`` and define ``encoder`` and ``parse``."""

    api: ClassVar[Api]
    # Header names this format puts the key in (beyond Authorization).
    key_headers: ClassVar[tuple[str, ...]] = ()
    # How the error reads when a 200 carries no answer of this format.
    no_answer: ClassVar[str] = "the gateway answered 200 without an answer: "
    # Whether the answer is tokens a ``max_tokens`` caps (not an image, audio or a ranking).
    token_output: ClassVar[bool] = True
    # The body's Content-Type when it is not JSON (a multipart upload).
    content_type: ClassVar[str | None] = None

    def variant(self, with_images: bool) -> Format:
        """The format that sends a prompt with images from ``prompt.image_column`` (itself)."""
        return self

    def path(self, model_id: str) -> str:
        """The path of a request, relative to the base URL (``.../v1/``)."""
        return self.api

    def headers(self, api_key: str | None) -> dict[str, str]:
        """Headers a request of this format needs beyond the Bearer key."""
        return dict.fromkeys(self.key_headers, api_key) if api_key else {}

    @abstractmethod
    def encoder(self, model_id: str, params: JsonObject) -> Encoder:
        """The body builder of one model: messages JSON in, the exact request JSON out."""

    @abstractmethod
    def parse(self, payload: JsonObject, reply: Reply) -> Answer | None:
        """The answer in a successful JSON body, or None when it holds no answer."""

    def answer(self, payload: JsonObject, reply: Reply, body: bytes, secrets: list[str]) -> Answer:
        """``parse``, with a 200 that holds no answer raised as a ``ServerError``.

        An answer with nothing in it (see ``is_empty``) is an ``EmptyAnswer``.
        """
        answer = self.parse(payload, reply)
        if answer is None:
            raise ServerError(
                self.no_answer + snippet(body, secrets), http_status=reply.http_status
            )
        if is_empty(answer):
            raise EmptyAnswer(
                "the gateway answered 200 with an empty answer (no content, tool call, "
                "refusal nor usage): " + snippet(body, secrets),
                http_status=reply.http_status,
            )
        return answer

    def billed_chars(self, body: bytes) -> int | None:
        """The characters a request is billed by (speech's input), or None."""
        return None

    def request_seconds(self, body: bytes) -> float | None:
        """The seconds of media a request uploads (a transcription's audio), or None."""
        return None

    def read(
        self, status: int, headers: Mapping[str, str], body: bytes, reply: Reply, secrets: list[str]
    ) -> Answer:
        """The answer in a whole body (JSON here; a binary answer where a format says so)."""
        payload = answer_payload(status, headers, body, secrets)
        return self.answer(payload, reply, body, secrets)

    async def read_stream(
        self, lines: AsyncIterator[bytes], reply: Reply, started: float, secrets: list[str]
    ) -> Answer:
        """The answer of a streamed request, read line by line (chat only: see config)."""
        raise NotImplementedError(f"api: {self.api} is not read as a stream")


def reply_of(status: int, headers: Mapping[str, str], latency_s: float) -> Reply:
    """The facts every answer's headers carry, read the same for every format.

    Header names are matched without regard to case, as HTTP has them.
    """
    if not isinstance(headers, CIMultiDictProxy | CIMultiDict):
        headers = CIMultiDict(headers)
    return Reply(
        status,
        latency_s,
        _first(headers, REQUEST_ID_HEADERS),
        read_advice(headers),
        _first(headers, UPSTREAM_MODEL_HEADERS),
    )


def _first(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` the headers carry with a value."""
    for name in names:
        value = headers.get(name)
        if value:
            return value
    return None


def make_answer(
    reply: Reply,
    usage: Usage,
    *,
    response: str | None,
    finish_reason: str | None,
    response_id: str | None,
    served_model: str | None,
    reasoning: str | None = None,
    tool_calls: str | None = None,
    refused: bool = False,
    embedding: list[float] | None = None,
    ttft_s: float | None = None,
    time_to_last_token_s: float | None = None,
) -> Answer:
    """The ``Answer`` of a format's content with the reply's HTTP facts and usage.

    ``finish_reason`` is the format's own word, kept as ``finish_reason_raw``
    and told in the one vocabulary as ``finish_reason``; a model that
    ``refused`` finished on ``content_filter`` whatever its word.
    """
    normal = normalise_finish(finish_reason, called_tools=tool_calls is not None)
    return Answer(
        response=response,
        reasoning=reasoning,
        finish_reason="content_filter" if refused else normal,
        prompt_tokens=usage.prompt,
        completion_tokens=usage.completion,
        total_tokens=usage.total,
        cached_tokens=usage.cached,
        reasoning_tokens=usage.reasoning,
        latency_s=reply.latency_s,
        ttft_s=ttft_s,
        time_to_last_token_s=time_to_last_token_s,
        tool_calls=tool_calls,
        embedding=embedding,
        http_status=reply.http_status,
        response_id=response_id,
        served_model=served_model,
        gateway_request_id=reply.gateway_request_id,
        upstream_model=reply.upstream_model,
        finish_reason_raw=finish_reason,
        ratelimit=reply.ratelimit,
    )


def is_empty(answer: Answer) -> bool:
    """Whether an answer holds nothing: no text, reasoning, tool call, vector nor token count.

    A refusal is kept as the response text, so it counts as content; a
    usage of all zeros is no usage.
    """
    return (
        not answer.response
        and not answer.reasoning
        and not answer.tool_calls
        and answer.embedding is None
        and not (answer.prompt_tokens or answer.completion_tokens or answer.total_tokens)
    )


def usage_of(usage: Any, fill_total: bool = False) -> Usage:
    """Prompt, completion, total, cached and reasoning tokens from any usage shape given.

    ``fill_total`` adds prompt and completion where the gateway gave no total.
    """
    if not isinstance(usage, dict) or not usage:
        return NO_USAGE
    prompt_details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    completion_details = usage.get("completion_tokens_details") or usage.get(
        "output_tokens_details"
    )
    prompt = int_or_none(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = int_or_none(usage.get("completion_tokens", usage.get("output_tokens")))
    total = int_or_none(usage.get("total_tokens"))
    if fill_total:
        total = total_of(prompt, completion, total)
    return Usage(
        prompt,
        completion,
        total,
        int_or_none(_get(prompt_details, "cached_tokens")),
        int_or_none(_get(completion_details, "reasoning_tokens")),
    )


def total_of(prompt: int | None, completion: int | None, total: int | None) -> int | None:
    """The total a gateway gave, else prompt plus completion (None without a prompt count)."""
    if total is None and prompt is not None:
        return prompt + (completion or 0)
    return total


def last_user_content(messages: list[JsonObject]) -> Any:
    """The content of the last user turn ("" if there is none), as the messages hold it."""
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def split_system(messages: list[JsonObject]) -> tuple[str | None, list[JsonObject]]:
    """System and developer turns joined into one text, and the other turns."""
    system = "\n\n".join(
        str(m["content"]) for m in messages if m["role"] in ("system", "developer")
    )
    rest = [m for m in messages if m["role"] not in ("system", "developer")]
    return system or None, rest


def compact_json(value: Any) -> bytes:
    """JSON as request bodies carry it: no spaces, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def calls_json(calls: list[Any]) -> str | None:
    """Tool calls as the ``tool_calls`` column holds them, or None without any."""
    return json.dumps(calls) if calls else None


def as_dict(value: Any) -> JsonObject:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def str_or_none(value: Any) -> str | None:
    """``value`` if it is a string."""
    return value if isinstance(value, str) else None


def int_or_none(value: Any) -> int | None:
    """``value`` as a token count: an int (never a bool), or a float with no fraction."""
    if type(value) is int:  # the usual case first (and never a bool)
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _int_text(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None
