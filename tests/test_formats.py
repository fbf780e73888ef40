"""The format registry: bytes on the wire pinned, every answer shape parsed into one record."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest

from batchrun.config import Job, ModelSpec
from batchrun.formats import FORMATS, Api
from batchrun.formats.base import reply_of
from batchrun.plan import plan_model, request_key

MESSAGES = json.dumps(
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": 'Héllo "x"'},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ],
    ensure_ascii=False,
    separators=(",", ":"),
).encode()
_TURNS = (
    '{"role":"user","content":"Héllo \\"x\\""},{"role":"assistant","content":"ok"},'
    '{"role":"user","content":[{"type":"text","text":"see"},{"type":"image_url",'
    '"image_url":{"url":"data:image/png;base64,AAAA"}}]}'
)
_ALL = '[{"role":"system","content":"Be brief."},' + _TURNS + "]"
_IMAGE = (
    '[{"type":"text","text":"see"},{"type":"image_url",'
    '"image_url":{"url":"data:image/png;base64,AAAA"}}]'
)

# Taken from the code before the format registry: the bytes sent and the keys must not move.
WIRE = [
    (
        "chat",
        False,
        "chat/completions",
        '{"model":"m","messages":' + _ALL + ',"temperature":0,"max_tokens":10,"top_p":0.5}',
        "58decf26f9e8549d1e711a4c47b6ee79",
        {},
    ),
    (
        "chat",
        True,
        "chat/completions",
        '{"model":"m","messages":'
        + _ALL
        + ',"temperature":0,"max_tokens":10,"top_p":0.5,"stream":true,'
        + '"stream_options":{"include_usage": true}}',
        "b44c2ef4440017c37a14bb055670371b",
        {},
    ),
    (
        "responses",
        False,
        "responses",
        '{"model":"m","input":' + _ALL + ',"temperature":0,"top_p":0.5,"max_output_tokens":10}',
        "ed450fcc9b5b5ba67fb2078b0dd50477",
        {},
    ),
    (
        "messages",
        False,
        "messages",
        '{"model":"m","messages":['
        + _TURNS
        + '],"max_tokens":10,"system":"Be brief.","temperature":0,"top_p":0.5}',
        "5d86729bec9be0c6860c708990bf34bd",
        {"anthropic-version": "2023-06-01", "x-api-key": "sk-k"},
    ),
    (
        "gemini",
        False,
        "../v1beta/models/m:generateContent",
        '{"contents":[{"role":"user","parts":[{"text":"Héllo \\"x\\""}]},{"role":"model",'
        '"parts":[{"text":"ok"}]},{"role":"user","parts":[{"text":"see"},{"inline_data":'
        '{"mime_type":"image/png","data":"AAAA"}}]}],"systemInstruction":{"parts":[{"text":'
        '"Be brief."}]},"generationConfig":{"temperature":0,"maxOutputTokens":10},"top_p":0.5}',
        "1ec04379d422e30e8aeae705d7a8ca47",
        {"x-goog-api-key": "sk-k"},
    ),
    (
        "embeddings",
        False,
        "embeddings",
        '{"model":"m","input":' + _IMAGE + ',"top_p":0.5}',
        "c4d4b8b975345c0f4cd57e6524a9e9a4",
        {},
    ),
]


def _spec() -> ModelSpec:
    job = Job.model_validate(
        {
            "name": "t",
            "provider": "mock",
            "input": {"path": "x"},
            "prompt": {"user": "q"},
            "models": ["m"],
            "output": {"path": "o.parquet"},
        }
    )
    return job.models[0]


@pytest.mark.parametrize(("api", "stream", "path", "body", "key", "headers"), WIRE)
def test_wire_bytes_and_keys_unchanged(
    api: Api, stream: bool, path: str, body: str, key: str, headers: dict[str, str]
) -> None:
    """Every format sends the exact bytes, path and key headers it sent before the registry."""
    model = plan_model(0, _spec(), {"temperature": 0, "max_tokens": 10, "top_p": 0.5}, stream, api)
    assert model.path == path
    assert model.body(MESSAGES) == body.encode()
    assert request_key(model.key_prefix, "p1", MESSAGES, 1) == key
    assert FORMATS[api].headers("sk-k") == headers


def test_registry_has_one_object_per_api() -> None:
    """FORMATS holds exactly one format for each name of the Api literal, under its own name."""
    assert set(FORMATS) == set(typing.get_args(Api))
    assert all(format.api == api for api, format in FORMATS.items())


def test_config_offers_the_registry_apis() -> None:
    """The job file's ``api:`` choices are the registry's (config repeats the literal for now)."""
    offered = set(typing.get_args(typing.get_type_hints(Job)["api"]))
    literal, _none = typing.get_args(typing.get_type_hints(ModelSpec)["api"])
    assert offered == set(typing.get_args(literal)) == set(typing.get_args(Api))


HEADERS = {
    "X-Oneapi-Request-Id": "rid",
    "x-ratelimit-remaining-requests": "7",
    "x-ratelimit-reset-requests": "2s",
}
TOOL = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
PAYLOADS: dict[str, tuple[Api, dict[str, Any]]] = {
    "chat": (
        "chat",
        {
            "id": "c1",
            "model": "gpt-x",
            "choices": [
                {
                    "message": {
                        "content": "Paris.",
                        "reasoning_content": "think",
                        "tool_calls": [TOOL],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {
                "prompt_tokens": 14,
                "completion_tokens": 3,
                "total_tokens": 17,
                "prompt_tokens_details": {"cached_tokens": 5},
                "completion_tokens_details": {"reasoning_tokens": 2},
            },
        },
    ),
    "responses": (
        "responses",
        {
            "id": "resp_1",
            "model": "gpt-r",
            "status": "completed",
            "error": None,
            "output": [
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hmm"}]},
                {
                    "type": "message",
                    "content": [
                        {"type": "output_text", "text": "Hi"},
                        {"type": "output_text", "text": " there"},
                    ],
                },
                {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c"},
            ],
            "usage": {
                "input_tokens": 9,
                "output_tokens": 4,
                "total_tokens": 13,
                "input_tokens_details": {"cached_tokens": 1},
                "output_tokens_details": {"reasoning_tokens": 2},
            },
        },
    ),
    "responses_incomplete": (
        "responses",
        {
            "id": "resp_2",
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
            "output": [],
            "usage": {"input_tokens": 9, "output_tokens": 4},
        },
    ),
    "messages": (
        "messages",
        {
            "id": "msg_1",
            "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "deep"},
                {"type": "text", "text": "Bonjour"},
                {"type": "tool_use", "id": "tu", "name": "f", "input": {}},
            ],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 6},
        },
    ),
    "gemini": (
        "gemini",
        {
            "responseId": "g1",
            "modelVersion": "gemini-2",
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {"text": "plan", "thought": True},
                            {"text": "Hallo"},
                            {"functionCall": {"name": "f", "args": {}}},
                        ]
                    },
                    "finishReason": "MAX_TOKENS",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 7,
                "candidatesTokenCount": 3,
                "totalTokenCount": 12,
                "cachedContentTokenCount": 2,
                "thoughtsTokenCount": 2,
            },
        },
    ),
    "embeddings": (
        "embeddings",
        {
            "object": "list",
            "model": "emb-1",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}],
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        },
    ),
}
# (response, finish, prompt, completion, total, cached, reasoning tokens, id, model, reasoning,
#  tool calls, embedding), as the parsers before the registry gave them.
PARSED: dict[str, tuple[Any, ...]] = {
    "chat": (
        "Paris.", "tool_calls", 14, 3, 17, 5, 2, "c1", "gpt-x", "think", json.dumps([TOOL]), None,
    ),
    "responses": (
        "Hi there", "tool_calls", 9, 4, 13, 1, 2, "resp_1", "gpt-r", "hmm",
        '[{"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c"}]', None,
    ),
    "responses_incomplete": (
        None, "length", 9, 4, 13, None, None, "resp_2", None, None, None, None,
    ),
    "messages": (
        "Bonjour", "tool_calls", 14, 6, 20, 4, None, "msg_1", "claude-x", "deep",
        '[{"type": "tool_use", "id": "tu", "name": "f", "input": {}}]', None,
    ),
    "gemini": (
        "Hallo", "length", 7, 3, 12, 2, 2, "g1", "gemini-2", "plan",
        '[{"name": "f", "args": {}}]', None,
    ),
    "embeddings": (None, "stop", 3, None, 3, None, None, None, "emb-1", None, None, [0.25, -0.5]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(PAYLOADS))
def test_every_format_parses_into_one_answer(case: str) -> None:
    """Each format's answer lands in the same Answer fields, with the reply's HTTP facts."""
    api, payload = PAYLOADS[case]
    answer = FORMATS[api].answer(payload, reply_of(200, HEADERS, 0.5), b"", [])
    got = (
        answer.response,
        answer.finish_reason,
        answer.prompt_tokens,
        answer.completion_tokens,
        answer.total_tokens,
        answer.cached_tokens,
        answer.reasoning_tokens,
        answer.response_id,
        answer.served_model,
        answer.reasoning,
        answer.tool_calls,
        answer.embedding,
    )
    assert got == PARSED[case]
    assert (answer.http_status, answer.latency_s, answer.gateway_request_id) == (200, 0.5, "rid")
    assert answer.ratelimit is not None and answer.ratelimit.requests is not None
    assert (answer.ratelimit.requests.remaining, answer.ratelimit.requests.reset_s) == (7, 2.0)
