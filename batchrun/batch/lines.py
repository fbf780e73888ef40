"""Batch input lines: one per request, keyed by its request key, split within the API's limits.

OpenAI takes a JSONL file of ``{"custom_id", "method", "url", "body"}``
lines; Anthropic a JSON list of ``{"custom_id", "params"}``. The request
key (32 hex characters) is the ``custom_id`` in both, within both APIs'
rules (at most 64 characters; Anthropic: ``^[a-zA-Z0-9_-]{1,64}$``), so
answers join back to rows whatever order they come in. ``split`` keeps
each batch within the API's request and byte limits and ``limits.batch_size``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from batchrun.batch.mode import Lifecycle
from batchrun.plan import PlannedModel, Request

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ApiLimits:
    """How much one batch of an API may hold."""

    max_requests: int
    max_bytes: int


API_LIMITS: dict[Lifecycle, ApiLimits] = {
    "openai": ApiLimits(50_000, 200 * 1024**2),
    "anthropic": ApiLimits(100_000, 256 * 1024**2),
}


def openai_url(model: PlannedModel) -> str:
    """The endpoint an OpenAI batch line names (``/v1/chat/completions``, ``/v1/embeddings``)."""
    return "/v1/" + model.path


def encode_line(lifecycle: Lifecycle, request: Request) -> bytes:
    """The batch line of one request: its key as ``custom_id``, its exact online body."""
    key = request.key
    if not _CUSTOM_ID.match(key):
        raise ValueError(f"request key {key!r} is not a valid custom_id")
    if lifecycle == "openai":
        url = openai_url(request.model).encode()
        return (
            (b'{"custom_id":"' + key.encode() + b'","method":"POST","url":"' + url + b'","body":')
            + request.body
            + b"}"
        )
    return b'{"custom_id":"' + key.encode() + b'","params":' + request.body + b"}"


@dataclass
class Chunk:
    """The lines of one batch to submit, with the keys they carry in order."""

    keys: list[str]
    lines: list[bytes]

    @property
    def size(self) -> int:
        """Bytes of the lines with their separators."""
        return sum(len(line) + 1 for line in self.lines)

    def jsonl(self) -> bytes:
        """The lines as a JSONL file (OpenAI)."""
        return b"\n".join(self.lines) + b"\n"

    def request_list(self) -> bytes:
        """The lines as the body of a Message Batches create request (Anthropic)."""
        return b'{"requests":[' + b",".join(self.lines) + b"]}"


def split(
    lifecycle: Lifecycle, requests: Iterable[Request], batch_size: int | None = None
) -> Iterator[Chunk]:
    """The requests as batches, each within the API's limits and ``batch_size``.

    A request whose line alone exceeds the byte limit is a ``ValueError``.
    """
    limits = API_LIMITS[lifecycle]
    most = min(limits.max_requests, batch_size or limits.max_requests)
    room = limits.max_bytes - 64  # the envelope of the file or request body
    chunk = Chunk([], [])
    used = 0
    for request in requests:
        line = encode_line(lifecycle, request)
        if len(line) + 1 > room:
            raise ValueError(
                f"request {request.key} ({request.prompt_id}) is {len(line):,} bytes, more than "
                f"a batch may hold ({limits.max_bytes:,})"
            )
        if chunk.keys and (len(chunk.keys) >= most or used + len(line) + 1 > room):
            yield chunk
            chunk, used = Chunk([], []), 0
        chunk.keys.append(request.key)
        chunk.lines.append(line)
        used += len(line) + 1
    if chunk.keys:
        yield chunk
