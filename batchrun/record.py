"""The records one request passes through: ``Request`` to send, ``Answer`` parsed, ``Result`` kept.

``Request`` is what the plan yields; ``Answer`` is what any API format's
answer parses into (one type for chat, responses, messages, gemini,
embeddings, and the artifact kinds: images, speech, transcription, rerank
and video); ``Result`` is one row of the results, ok or failed, and
``RESULT_SCHEMA`` the Parquet columns a run writes for it (pinned to
``Result``'s fields by ``tests/test_record.py``). Records are built by
keyword; ``Result.ok`` and ``Result.failed`` are the only ways the runner
makes a row, so the fields shared with ``Answer`` are copied in one place.
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import polars as pl

if TYPE_CHECKING:
    from batchrun.plan import PlannedModel
    from batchrun.ratelimits import RateLimitAdvice


class Request(NamedTuple):
    """One request to send. ``body`` is the exact JSON that goes on the wire."""

    key: str
    row: int
    prompt_id: str
    model: PlannedModel
    sample: int
    body: bytes
    estimated_tokens: int


class Blob(NamedTuple):
    """One file an answer carries: its bytes (or a URL to fetch them from) and promised type."""

    data: bytes | None
    mime: str | None
    url: str | None = None


# Not frozen: a frozen dataclass costs about four times as much to build, on the hot path.
@dataclass(slots=True, kw_only=True)
class Answer:
    """A successful answer in any format, reduced to what the results record.

    The fields from ``response`` to ``finish_reason_raw`` are named and
    ordered as ``Result``'s columns of the same name (``Result.ok`` copies
    them as one block); the rate-limit fields feed the limiter only.
    """

    response: str | None
    reasoning: str | None = None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    latency_s: float
    ttft_s: float | None = None
    time_to_last_token_s: float | None = None
    tool_calls: str | None = None
    embedding: list[float] | None = None
    artifact_paths: list[str] | None = None
    artifact_type: str | None = None
    ranking: list[int] | None = None
    relevance_scores: list[float] | None = None
    media_seconds: float | None = None
    input_chars: int | None = None
    http_status: int
    response_id: str | None
    served_model: str | None
    gateway_request_id: str | None
    upstream_model: str | None = None
    finish_reason_raw: str | None = None
    ratelimit: RateLimitAdvice | None = None  # what the answer's headers said of the limits
    # Files an answer carries (images, audio, video) or names by URL, before they are
    # written beside the output; ``artifacts.py`` turns them into ``artifact_paths``.
    blobs: list[Blob] | None = None


class Result(NamedTuple):
    """One finished request, ok or failed, as it goes into the results.

    A named tuple rather than a dataclass: a run makes one per request, and
    tuples are cheap to build and to turn into columns. The column order of
    the files is ``RESULT_SCHEMA``'s, not this field order.
    """

    prompt_id: str
    model: str
    model_id: str
    sample: int
    request_key: str
    status: str
    attempts: int
    started_at: float
    finished_at: float
    response: str | None = None
    reasoning: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    time_to_last_token_s: float | None = None
    tool_calls: str | None = None
    embedding: list[float] | None = None
    artifact_paths: list[str] | None = None
    artifact_type: str | None = None
    ranking: list[int] | None = None
    relevance_scores: list[float] | None = None
    media_seconds: float | None = None
    input_chars: int | None = None
    http_status: int | None = None
    response_id: str | None = None
    served_model: str | None = None
    gateway_request_id: str | None = None
    upstream_model: str | None = None
    finish_reason_raw: str | None = None
    cost_usd: float | None = None
    output_tokens_per_s: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    parsed: str | None = None
    parsed_valid: bool | None = None
    mode: str | None = None  # "online" or "batch"
    batch_id: str | None = None
    submitted_at: float | None = None

    @classmethod
    def ok(
        cls,
        request: Request,
        answer: Answer,
        attempts: int,
        started: float,
        parsed: str | None = None,
        parsed_valid: bool | None = None,
    ) -> Result:
        """The row of a request answered online: its identity, then the answer's fields."""
        model = request.model
        return cls._make(
            (
                request.prompt_id,
                model.name,
                model.model_id,
                request.sample,
                request.key,
                "ok",
                attempts,
                started,
                time.time(),
                *_answer_columns(answer),
                None,
                _tokens_per_s(answer),
                None,
                None,
                parsed,
                parsed_valid,
                "online",
                None,
                None,
            )
        )

    @classmethod
    def failed(
        cls,
        request: Request,
        *,
        error_type: str,
        message: str,
        http_status: int | None,
        attempts: int,
        started: float,
    ) -> Result:
        """The row of an online request that failed (or was never sent: ``attempts=0``)."""
        return cls(
            prompt_id=request.prompt_id,
            model=request.model.name,
            model_id=request.model.model_id,
            sample=request.sample,
            request_key=request.key,
            status="error",
            attempts=attempts,
            started_at=started,
            finished_at=time.time(),
            error_type=error_type,
            error_message=message,
            http_status=http_status,
            mode="online",
        )


# The answer's fields that are result columns, in the order they sit in both records.
ANSWER_COLUMNS: tuple[str, ...] = tuple(
    name for name in Answer.__dataclass_fields__ if name in Result._fields
)
_FIRST = Result._fields.index(ANSWER_COLUMNS[0])
if Result._fields[_FIRST : _FIRST + len(ANSWER_COLUMNS)] != ANSWER_COLUMNS:  # pragma: no cover
    raise TypeError("Answer's result columns must sit in one block, in Result's order")
# One C-level call reads the whole block, in order: cheaper than 17 keyword arguments.
_answer_columns = operator.attrgetter(*ANSWER_COLUMNS)


def _tokens_per_s(answer: Answer) -> float | None:
    """Output tokens a second between the first and the last token of a stream."""
    first, last = answer.ttft_s, answer.time_to_last_token_s
    if first is None or last is None or last <= first or not answer.completion_tokens:
        return None
    return answer.completion_tokens / (last - first)


# Every column batchrun writes besides the carried input columns, with its fixed type, in
# the order the files hold them. ``tests/test_record.py`` checks it against ``Result``.
RESULT_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "job": pl.String(),
    "prompt_id": pl.String(),  # dataset.PROMPT_ID (not imported: config imports formats)
    "model": pl.String(),
    "model_id": pl.String(),
    "sample": pl.Int32(),
    "request_key": pl.String(),
    "response": pl.String(),
    "reasoning": pl.String(),
    "finish_reason": pl.String(),
    "finish_reason_raw": pl.String(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "total_tokens": pl.Int64(),
    "cached_tokens": pl.Int64(),
    "reasoning_tokens": pl.Int64(),
    "cost_usd": pl.Float64(),
    "latency_s": pl.Float64(),
    "ttft_s": pl.Float64(),
    "time_to_last_token_s": pl.Float64(),
    "output_tokens_per_s": pl.Float64(),
    "started_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"),
    "status": pl.String(),
    "error_type": pl.String(),
    "error_message": pl.String(),
    "http_status": pl.Int32(),
    "attempts": pl.Int32(),
    "response_id": pl.String(),
    "served_model": pl.String(),
    "upstream_model": pl.String(),
    "gateway_request_id": pl.String(),
    "tool_calls": pl.String(),
    "embedding": pl.List(pl.Float32()),
    # Files written beside the output (``NAME.files/<sha256>.<ext>``, relative to the
    # output's folder) and their MIME type: images, audio, video.
    "artifact_paths": pl.List(pl.String()),
    "artifact_type": pl.String(),
    # A rerank's document indices, best first, and their scores in the same order.
    "ranking": pl.List(pl.Int32()),
    "relevance_scores": pl.List(pl.Float64()),
    # Seconds of audio or video (what per_second prices), characters spoken (per_1k_chars).
    "media_seconds": pl.Float64(),
    "input_chars": pl.Int64(),
    "parsed": pl.String(),
    "parsed_valid": pl.Boolean(),
    "mode": pl.String(),
    "batch_id": pl.String(),
    "submitted_at": pl.Datetime("us", "UTC"),
}
