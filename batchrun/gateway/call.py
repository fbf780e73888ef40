"""One admitted generation request, and the shape every API format object has.

``Call`` is what the gateway hands a format once auth, model, limits,
scenario and latency are settled. ``ApiFormat`` is the gateway's mirror of
the client's format registry: one object per API that knows its route, how
to read a request (model, prompt, last user text) and how to render the
answer, streamed or not. Errors are the gateway's refusals (``refusals.py``),
worded the same for every format, as one-api/new-api word them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web

from batchrun.gateway.settings import GatewaySettings
from batchrun.wire import JsonObject


@dataclass(frozen=True)
class Call:
    """An admitted request: what was asked, of which model, under which scenario."""

    request: web.Request
    body: JsonObject
    model: str
    request_id: str
    scenario: str | None
    settings: GatewaySettings

    @property
    def streamed(self) -> bool:
        """Whether the client asked for a stream."""
        return self.body.get("stream") is True

    @property
    def accuracy(self) -> float:
        """How often this model answers arithmetic right."""
        return self.settings.accuracy_of(self.model)


class ApiFormat(Protocol):
    """The gateway side of one API: its route, its request, its answer."""

    name: str
    path: str  # the aiohttp route it answers (POST)

    def model_of(self, request: web.Request, body: JsonObject) -> object:
        """The model the request names (anything but a non-empty str is refused)."""
        ...

    def texts(self, body: JsonObject) -> tuple[str, str]:
        """The whole prompt and the last user text."""
        ...

    async def respond(self, call: Call) -> web.StreamResponse:
        """The answer to ``call``, streamed when asked for and the API streams."""
        ...


def json_response(payload: JsonObject, headers: dict[str, str] | None = None) -> web.Response:
    """A 200 JSON answer serialised with orjson."""
    return web.Response(
        body=orjson.dumps(payload), content_type="application/json", headers=headers
    )


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list."""
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return content if isinstance(content, str) else ""


def last_user(turns: list[tuple[str, str]], prompt: str) -> str:
    """The text of the last user turn, or the whole prompt when there is none."""
    return next((text for role, text in reversed(turns) if role == "user"), prompt)


def turns_of(messages: Any) -> list[tuple[str, str]]:
    """(role, text) of each message of a chat-like list."""
    if not isinstance(messages, list):
        return []
    return [
        (str(m.get("role", "user")), text_of(m.get("content")))
        for m in messages
        if isinstance(m, dict)
    ]


class MessagesBody:
    """What the formats whose body carries ``model`` and ``messages`` read the same way."""

    def model_of(self, request: web.Request, body: JsonObject) -> object:
        """The body's ``model``."""
        return body.get("model")

    def texts(self, body: JsonObject) -> tuple[str, str]:
        """The messages' text and the last user message's."""
        turns = turns_of(body.get("messages"))
        prompt = "\n".join(text for _, text in turns)
        return prompt, last_user(turns, prompt)
