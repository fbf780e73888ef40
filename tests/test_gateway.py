"""The built-in gateway itself, driven with aiohttp over a real socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from batchrun.gateway import GatewayThread

KEY = {"Authorization": "Bearer sk-test"}
Start = Callable[..., GatewayThread]


async def _call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=headers) as response,
    ):
        return response.status, dict(response.headers), await response.read()


def call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = KEY
) -> tuple[int, dict[str, str], bytes]:
    """One request to the gateway: status, headers and body."""
    return asyncio.run(_call(method, url, body, headers))


def post(gw: GatewayThread, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    """POST ``body`` to ``path`` with the test key; the status and the JSON answer."""
    status, _, raw = call("POST", gw.url + path, body, {**KEY, **headers})
    return status, json.loads(raw) if raw else None


def events_of(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """The (event name, JSON data) of each server-sent event in ``raw``."""
    found = []
    for block in raw.decode().split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data = line.removeprefix("data:").strip()
        if data and data != "[DONE]":
            found.append((name, json.loads(data)))
    return found


def test_embeddings_list_input_gives_one_vector_per_input(start_gateway: Start) -> None:
    """input=["a", "b c"] gets two vectors, indexed 0 and 1, each differing (issue 17)."""
    gw = start_gateway()
    status, body = post(
        gw, "/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b c"]}
    )
    assert status == 200
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert body["data"][0]["embedding"] != body["data"][1]["embedding"]
    _, single = post(gw, "/embeddings", {"model": "text-embedding-3-small", "input": "b c"})
    assert single["data"][0]["embedding"] == body["data"][1]["embedding"]


RESPONSES_EVENTS = [
    "response.created",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def test_responses_stream_sends_the_sdk_event_sequence(start_gateway: Start) -> None:
    """stream: true on /v1/responses is SSE: the SDK's event types, numbered in order."""
    gw = start_gateway()
    body = {"model": "gpt-4o-mini", "input": "What is 2 + 3?", "stream": True}
    status, headers, raw = call("POST", gw.url + "/responses", body)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = events_of(raw)
    kinds = [data["type"] for _, data in events]
    assert [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]] == RESPONSES_EVENTS
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    deltas = "".join(d["delta"] for _, d in events if d["type"] == "response.output_text.delta")
    final = events[-1][1]["response"]
    assert deltas == "The answer is 5." == final["output"][0]["content"][0]["text"]
    assert final["status"] == "completed" and final["usage"]["output_tokens"] > 0


def test_responses_body_carries_null_error(start_gateway: Start) -> None:
    """A successful responses body carries "error": null, as the published schema has it."""
    gw = start_gateway()
    status, body = post(gw, "/responses", {"model": "gpt-4o-mini", "input": "hi"})
    assert status == 200 and "error" in body and body["error"] is None
    assert body["output"][0]["content"][0]["type"] == "output_text"


def test_unknown_model_refused_like_new_api(start_gateway: Start) -> None:
    """A model outside DEFAULT_MODELS gets 503 model_not_found "no available channel"."""
    gw = start_gateway()
    status, body = post(gw, "/chat/completions", {"model": "gpt-9", "messages": []})
    assert status == 503
    assert body["error"]["code"] == "model_not_found"
    assert "no available channel for model gpt-9 under group default" in (
        body["error"]["message"].lower()
    )
    assert gw.gateway.stats.by_status[503] == 1


def test_unknown_models_served_when_configured(start_gateway: Start) -> None:
    """unknown_models="serve" answers any model name."""
    gw = start_gateway(unknown_models="serve")
    status, body = post(gw, "/chat/completions", {"model": "gpt-9", "messages": []})
    assert status == 200 and body["model"] == "gpt-9"


def test_configured_model_list_refuses_others(start_gateway: Start) -> None:
    """With models=[...] a model off the list is refused, a listed one answered."""
    gw = start_gateway(models=["alpha"])
    assert post(gw, "/chat/completions", {"model": "model-a", "messages": []})[0] == 503
    assert post(gw, "/chat/completions", {"model": "alpha", "messages": []})[0] == 200


def test_stats_middleware_counts_every_route(start_gateway: Start) -> None:
    """Every route is counted in all_requests, by_path and by_status; /_sim/stats is not."""
    gw = start_gateway()
    call("GET", gw.url + "/models/gpt-4o-mini")
    call("GET", gw.url + "/dashboard/billing/usage")
    call("GET", gw.url.removesuffix("/v1") + "/api/usage/token/")
    call("GET", gw.url + "/no/such/path")
    stats = gw.gateway.stats
    assert stats.all_requests == 4 and stats.requests == 0
    assert stats.by_path["/v1/models/gpt-4o-mini"] == 1
    assert stats.by_path["/v1/dashboard/billing/usage"] == 1
    assert stats.by_status[200] == 2 and stats.by_status[404] == 2
    _, _, raw = call("GET", gw.url.removesuffix("/v1") + "/_sim/stats")
    assert json.loads(raw)["all_requests"] == 4


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", {"model": "model-a", "messages": [{"role": "user", "content": "x"}]}),
        ("/responses", {"model": "model-a", "input": "x"}),
        ("/messages", {"model": "model-a", "messages": [{"role": "user", "content": "x"}]}),
        ("/embeddings", {"model": "model-a", "input": "x"}),
    ],
)
def test_generation_routes_counted_alike(start_gateway: Start, path: str, body: Any) -> None:
    """Each generation route counts in requests, by_model and the in-flight figures."""
    gw = start_gateway()
    assert post(gw, path, body)[0] == 200
    stats = gw.gateway.stats
    assert (stats.requests, stats.by_model["model-a"], stats.in_flight) == (1, 1, 0)
    assert stats.max_in_flight == 1 and stats.in_flight_at_first_answer == 1


@pytest.mark.parametrize("path", ["/chat/completions", "/responses", "/embeddings", "/models"])
def test_no_key_is_refused_on_every_key_route(start_gateway: Start, path: str) -> None:
    """No key is a 401 (S07) with a request id, on generation routes and the model list."""
    gw = start_gateway()
    method = "GET" if path == "/models" else "POST"
    status, headers, raw = call(method, gw.url + path, {"model": "model-a"}, headers={})
    assert status == 401 and headers["X-Oneapi-Request-Id"]
    assert json.loads(raw)["error"]["message"].startswith("Invalid token")


def test_any_key_accepted_without_a_key_list(start_gateway: Start) -> None:
    """Without keys configured any non-empty key passes; with a list only its keys do."""
    gw = start_gateway()
    body = {"model": "model-a", "messages": []}
    assert post(gw, "/chat/completions", body, Authorization="whatever")[0] == 200
    listed = start_gateway(keys=["sk-right"])
    assert post(listed, "/chat/completions", body, Authorization="Bearer sk-wrong")[0] == 401
    assert post(listed, "/chat/completions", body, Authorization="Bearer right")[0] == 200


def test_request_id_on_every_response(start_gateway: Start) -> None:
    """X-Oneapi-Request-Id is on answers, refusals and model lists alike."""
    gw = start_gateway()
    for method, path in (("GET", "/models"), ("POST", "/batches"), ("POST", "/files")):
        _, headers, _ = call(method, gw.url + path, {})
        assert headers["X-Oneapi-Request-Id"].endswith("batchrun")


def test_slow_scenario_s25_cuts_a_plain_answer(start_gateway: Start) -> None:
    """S25: a non-streamed answer stalls, then gets nginx's 504 page; a stream succeeds."""
    gw = start_gateway(stall_s=0.05)
    body = {"model": "model-a", "messages": [{"role": "user", "content": "x"}]}
    status, _, raw = call(
        "POST", gw.url + "/chat/completions", body, {**KEY, "X-Sim-Scenario": "S25"}
    )
    assert status == 504 and b"504 Gateway Time-out" in raw
    status, _, raw = call(
        "POST",
        gw.url + "/chat/completions",
        {**body, "stream": True},
        {**KEY, "X-Sim-Scenario": "S25"},
    )
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")


def test_unknown_scenario_is_a_400(start_gateway: Start) -> None:
    """A scenario code the table lacks is refused with 400 unknown_scenario."""
    gw = start_gateway()
    status, body = post(
        gw, "/chat/completions", {"model": "model-a", "messages": []}, **{"X-Sim-Scenario": "S99"}
    )
    assert status == 400 and body["error"]["code"] == "unknown_scenario"
