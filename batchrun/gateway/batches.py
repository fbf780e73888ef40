"""The batches the built-in gateway holds: what was submitted, when it ends, and its answers.

``BatchStore`` keeps every file and batch for as long as the gateway runs.
A batch runs for ``BatchSettings.delay_s`` (its counts rise meanwhile),
then ends: each line answered by the same format object that answers it
online, some lines failed (``line_fail_rate``), or, for the first
``expire_batches``, only the first ``expire_done`` lines answered and the
rest expired. ``batch_routes.py`` renders this in OpenAI's and Anthropic's
shapes.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

import orjson
from aiohttp import web

from batchrun.gateway.call import Call
from batchrun.gateway.formats import FORMATS
from batchrun.gateway.settings import BatchSettings, GatewaySettings
from batchrun.wire import JsonObject

Flavour = Literal["openai", "anthropic"]
# The endpoints an OpenAI batch may name, and the format that answers each.
ENDPOINT_FORMATS = {
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
}


@dataclass
class Answer:
    """One line's outcome: answered (HTTP status and body), or expired or cancelled."""

    custom_id: str
    outcome: Literal["answered", "expired", "cancelled"]
    status: int = 200
    body: JsonObject = field(default_factory=dict)


@dataclass
class HeldBatch:
    """One submitted batch."""

    id: str
    flavour: Flavour
    created_at: float
    lines: list[JsonObject]
    endpoint: str = ""
    input_file_id: str = ""
    metadata: JsonObject = field(default_factory=dict)
    expire: bool = False
    invalid: tuple[int, str] | None = None
    delay_s: float = 0.0
    cancelled_at: float | None = None
    answers: list[Answer] | None = None
    ended_at: float | None = None

    def fraction(self) -> float:
        """How far along the batch is (0 to 1) by the time it has run."""
        if self.answers is not None:
            return 1.0
        if self.delay_s <= 0:
            return 1.0
        return min((time.time() - self.created_at) / self.delay_s, 1.0)

    def due(self) -> bool:
        """Whether the batch should end now."""
        return self.answers is None and (self.cancelled_at is not None or self.fraction() >= 1.0)

    def done_count(self) -> int:
        """Lines answered so far (as counted while it runs)."""
        if self.answers is not None:
            return sum(1 for a in self.answers if a.outcome == "answered")
        return int(self.fraction() * len(self.lines) * 0.99)


class BatchStore:
    """Files and batches of one gateway, and how they end."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.config = settings.batches or BatchSettings()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, HeldBatch] = {}
        self.created: list[str] = []
        self._random = random.Random(settings.seed)
        self._expire_left = self.config.expire_batches
        self._invalid_left = self.config.invalid_batches
        self._cut_left = self.config.cut_files
        self._missing_left = self.config.missing_files

    def new_file(self, content: bytes) -> str:
        """Keep a file; its id."""
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        self.files[file_id] = content
        return file_id

    def invalid_now(self) -> bool:
        """Whether the next batch fails validation (while ``invalid_batches`` last)."""
        if self._invalid_left <= 0:
            return False
        self._invalid_left -= 1
        return True

    def add(self, batch: HeldBatch) -> HeldBatch:
        """Hold a new batch, deciding now whether it will expire."""
        batch.delay_s = self.config.delay_s
        if batch.invalid is None and self._expire_left > 0:
            self._expire_left -= 1
            batch.expire = True
        self.batches[batch.id] = batch
        self.created.append(batch.id)
        return batch

    def download(self, content: bytes) -> bytes | None:
        """A results file as served: cut or missing while those faults last."""
        if self._cut_left > 0:
            self._cut_left -= 1
            return content[: max(len(content) // 2, 1)]
        if self._missing_left > 0:
            self._missing_left -= 1
            return None
        return content

    async def settle(self, batch: HeldBatch, request: web.Request) -> None:
        """End ``batch`` if it is due: answer, fail, expire or cancel each line."""
        if not batch.due() or batch.invalid is not None:
            return
        keep = len(batch.lines)
        if batch.cancelled_at is not None:
            keep = int(batch.fraction() * len(batch.lines) * 0.99)
        elif batch.expire:
            keep = min(self.config.expire_done, len(batch.lines))
        answers = []
        for index, line in enumerate(batch.lines):
            custom_id = str(line.get("custom_id"))
            if index >= keep:
                outcome: Literal["expired", "cancelled"] = (
                    "cancelled" if batch.cancelled_at is not None else "expired"
                )
                answers.append(Answer(custom_id, outcome))
            else:
                answers.append(await self._answer(batch, line, request))
        batch.answers = answers
        batch.ended_at = time.time()

    async def _answer(self, batch: HeldBatch, line: JsonObject, request: web.Request) -> Answer:
        custom_id = str(line.get("custom_id"))
        body = dict(line.get("body" if batch.flavour == "openai" else "params") or {})
        body.pop("stream", None)
        model = body.get("model")
        if self._random.random() < self.config.line_fail_rate:
            return Answer(custom_id, "answered", 500, _server_error(batch.flavour))
        if not isinstance(model, str) or not self.settings.serves(model):
            return Answer(custom_id, "answered", 404, _no_model(batch.flavour, str(model)))
        name = (
            ENDPOINT_FORMATS.get(batch.endpoint, "chat")
            if batch.flavour == "openai"
            else ("messages")
        )
        call = Call(request, body, model, f"batch_req_{uuid.uuid4().hex[:20]}", None, self.settings)
        response = await FORMATS[name].respond(call)
        raw = response.body if isinstance(response, web.Response) else None
        payload = orjson.loads(raw) if isinstance(raw, bytes) else {}
        return Answer(custom_id, "answered", 200, payload)


def parse_batch_settings(specs: tuple[str, ...] | list[str]) -> BatchSettings:
    """``--batches`` values (``on``, ``delay_s=30``, ``expire_batches=1``...) as settings.

    Raises ValueError naming the setting at fault.
    """
    settings = BatchSettings()
    known = {name: type(value) for name, value in vars(settings).items()}
    for spec in specs:
        if spec in ("on", ""):
            continue
        name, sep, text = spec.partition("=")
        kind = known.get(name.strip())
        if not sep or kind is None:
            raise ValueError(f"--batches {spec!r}: expected on or one of {', '.join(known)}=VALUE")
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"--batches {spec!r}: {text!r} is not a {kind.__name__}") from None
        if value < 0:
            raise ValueError(f"--batches {spec!r}: must be >= 0")
        setattr(settings, name.strip(), value)
    return settings


def _server_error(flavour: Flavour) -> JsonObject:
    if flavour == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}
    return {
        "error": {
            "message": "The server had an error processing your request.",
            "type": "server_error",
            "code": "server_error",
        }
    }


def _no_model(flavour: Flavour, model: str) -> JsonObject:
    message = f"The model '{model}' does not exist or you do not have access to it."
    if flavour == "anthropic":
        return {"type": "error", "error": {"type": "not_found_error", "message": message}}
    return {
        "error": {"message": message, "type": "invalid_request_error", "code": "model_not_found"}
    }
