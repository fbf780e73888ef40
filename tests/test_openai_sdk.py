"""The built-in gateway seen by the official ``openai`` SDK over a real socket (issue 17).

Each test makes the calls a user of the SDK would, against
``http://127.0.0.1:PORT/v1``, and checks what the SDK hands back.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import openai
import pytest

from batchrun.gateway import GatewayThread

Start = Callable[..., GatewayThread]
QUESTION = [{"role": "user", "content": "What is 17 + 25?"}]


def client_for(gw: GatewayThread, key: str = "sk-test", **options: object) -> openai.OpenAI:
    """An SDK client for the gateway, without retries so refusals show at once."""
    return openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0, **options)


def test_chat(start_gateway: Start) -> None:
    """chat.completions.create gets the answer, finish reason and usage."""
    completion = client_for(start_gateway()).chat.completions.create(
        model="gpt-4o-mini", messages=QUESTION
    )
    assert completion.choices[0].message.content == "The answer is 42."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_chat_streaming_with_usage(start_gateway: Start) -> None:
    """A streamed chat with include_usage yields the text in pieces and a usage chunk."""
    stream = client_for(start_gateway()).chat.completions.create(
        model="gpt-4o-mini",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The answer is 42."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_tools(start_gateway: Start) -> None:
    """Offered a tool, the model calls it with JSON arguments."""
    tool = {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate arithmetic.",
            "parameters": {"type": "object", "properties": {"question": {"type": "string"}}},
        },
    }
    completion = client_for(start_gateway()).chat.completions.create(
        model="gpt-4o-mini",
        messages=QUESTION,
        tools=[tool],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    called = choice.message.tool_calls[0]
    assert called.function.name == "calculator"
    assert json.loads(called.function.arguments) == {"question": "What is 17 + 25?"}


def test_structured_output(start_gateway: Start) -> None:
    """response_format json_schema gets JSON content that fits the schema."""
    schema = {
        "type": "object",
        "properties": {"value": {"type": "integer"}, "explanation": {"type": "string"}},
        "required": ["value", "explanation"],
    }
    completion = client_for(start_gateway()).chat.completions.create(
        model="gpt-4o-mini",
        messages=QUESTION,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    )
    content = json.loads(completion.choices[0].message.content or "")
    assert content["value"] == 42 and isinstance(content["explanation"], str)


def test_embeddings_single_and_list(start_gateway: Start) -> None:
    """One input gives one vector; a list of two gives two, in order, with index."""
    client = client_for(start_gateway())
    single = client.embeddings.create(model="text-embedding-3-small", input="b c")
    assert len(single.data) == 1 and len(single.data[0].embedding) == 16
    listed = client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"])
    assert [item.index for item in listed.data] == [0, 1]
    assert listed.data[1].embedding == single.data[0].embedding
    assert listed.data[0].embedding != listed.data[1].embedding


def test_responses_plain(start_gateway: Start) -> None:
    """responses.create gets the text (output_text) and usage."""
    response = client_for(start_gateway()).responses.create(
        model="gpt-4o-mini", input="What is 17 + 25?"
    )
    assert response.output_text == "The answer is 42."
    assert response.status == "completed"
    assert response.usage is not None and response.usage.output_tokens > 0


def test_responses_streamed(start_gateway: Start) -> None:
    """responses.create(stream=True) yields the SDK's events; the last holds text and usage."""
    stream = client_for(start_gateway()).responses.create(
        model="gpt-4o-mini", input="What is 17 + 25?", stream=True
    )
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.output_item.done" in kinds
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "The answer is 42."
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == "The answer is 42."
    assert final.response.usage is not None and final.response.usage.total_tokens > 0


def test_responses_stream_helper(start_gateway: Start) -> None:
    """The SDK's responses.stream() helper assembles the final response from the events."""
    client = client_for(start_gateway())
    with client.responses.stream(model="gpt-4o-mini", input="What is 17 + 25?") as stream:
        final = stream.get_final_response()
    assert final.output_text == "The answer is 42."


def test_models_list(start_gateway: Start) -> None:
    """models.list returns the configured models."""
    page = client_for(start_gateway(models=["alpha", "beta"])).models.list()
    assert [model.id for model in page] == ["alpha", "beta"]


def test_bad_key_is_authentication_error(start_gateway: Start) -> None:
    """A key outside the gateway's list raises AuthenticationError (401)."""
    client = client_for(start_gateway(keys=["sk-right"]), key="sk-wrong")
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert info.value.status_code == 401


def test_rate_limit_is_rate_limit_error(start_gateway: Start) -> None:
    """A 429 (S12) raises RateLimitError when the SDK may not retry."""
    client = client_for(start_gateway(), default_headers={"X-Sim-Scenario": "S12"})
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert info.value.status_code == 429


def test_unknown_model_is_refused(start_gateway: Start) -> None:
    """An unknown model raises the SDK's error for 503, carrying code model_not_found."""
    client = client_for(start_gateway())
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gpt-9", messages=QUESTION)
    assert info.value.status_code == 503
    assert info.value.code == "model_not_found"
    assert "gpt-9" in info.value.message
