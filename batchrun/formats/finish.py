"""The one finish-reason vocabulary every format's answer is told in.

Each API says why an answer ended in its own words: chat's ``stop`` and
``length``, Claude's ``end_turn`` and ``max_tokens``, Gemini's ``STOP`` and
``SAFETY``, the Responses API's status and ``incomplete_details``, and
gateways pass some of them through unchanged (new-api's Claude bridge
sends ``tool_use``; see GATEWAYS.md section 2.2). ``normalise_finish``
promises one of ``FINISH_REASONS`` for every reason it knows, and None for
one it does not (the raw value is kept in ``finish_reason_raw`` either way).
"""

from __future__ import annotations

from typing import Final

# The vocabulary of the ``finish_reason`` column.
FINISH_REASONS: Final = ("stop", "length", "tool_calls", "content_filter", "error")

# Every reason a format or gateway is known to send, lowercased, with its word in the vocabulary.
_WORDS: Final[dict[str, str]] = {
    # OpenAI chat and the gateways that copy it
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
    # Claude (stop_reason), also passed through by new-api's bridge
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    # Gemini (finishReason), lowercased; new-api maps every other reason to content_filter
    "safety": "content_filter",
    "recitation": "content_filter",
    "language": "content_filter",
    "blocklist": "content_filter",
    "prohibited_content": "content_filter",
    "spii": "content_filter",
    "image_safety": "content_filter",
    "other": "content_filter",
    "malformed_function_call": "error",
    "unexpected_tool_call": "error",
    # Responses (status, incomplete_details.reason)
    "completed": "stop",
    "max_output_tokens": "length",
    "failed": "error",
    # other OpenAI-compatible servers
    "eos": "stop",
    "model_length": "length",
    "abort": "error",
    "insufficient_system_resource": "error",
}


def normalise_finish(raw: str | None, *, called_tools: bool = False) -> str | None:
    """``raw`` in the vocabulary; None when there is none or it is unknown.

    An answer that ended normally with tool calls is ``tool_calls`` whatever
    the format says (Gemini and the Responses API say only that it stopped).
    """
    if raw is None:
        return None
    word = _WORDS.get(raw.lower())
    if word == "stop" and called_tools:
        return "tool_calls"
    return word
