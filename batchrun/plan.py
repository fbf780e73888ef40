"""The request list: one request per (row, model, sample), each with a stable key.

A ``Plan`` checks that every row renders, then yields requests lazily,
rows in order (rendered a slice at a time) and models interleaved within
each row, so a run stopped halfway has covered every model alike. The
request key is a hash of the prompt id and what is sent (messages, model
id, parameters, sample), so a rerun can tell which requests are already
done and an edited parameter sends only what changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Container, Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl

from batchrun.config import Job, ModelSpec
from batchrun.errors import JobError
from batchrun.formats import FORMATS, Api, Format
from batchrun.formats.base import Encoder
from batchrun.prompt_table import PromptTable
from batchrun.record import Request as Request  # moved: the record owns it
from batchrun.render import Renderer
from batchrun.templates import PromptTemplate
from batchrun.wire import JsonObject


@dataclass(frozen=True, slots=True)
class PlannedModel:
    """A model of the job with its merged parameters, ready to build bodies.

    ``encode`` is its format's body builder (``formats``), made once per model.
    """

    index: int
    name: str
    model_id: str
    params: JsonObject  # the request body fields, as sent
    max_output_tokens: int
    key_prefix: bytes
    encode: Encoder
    stream: bool = False
    api: Api = "chat"
    path: str = "chat/completions"
    response_schema: JsonObject | None = None
    content_type: str | None = None

    def body(self, messages_json: bytes) -> bytes:
        """The exact JSON sent for one prompt."""
        return self.encode(messages_json)


class Plan:
    """Every request of a job, rendered a slice at a time and produced on demand."""

    def __init__(self, job: Job, table: PromptTable, models: list[PlannedModel]) -> None:
        self.job = job
        self.table = table
        self.models = models

    @property
    def total(self) -> int:
        """How many requests the job has in all."""
        return self.rows * len(self.models) * self.job.samples

    @property
    def rows(self) -> int:
        """How many prompts the job has."""
        return self.table.height

    def estimated_input_tokens(self) -> int:
        """The estimated prompt tokens of every request together."""
        return self.table.tokens * len(self.models) * self.job.samples

    def count(
        self,
        skip: Container[str] = frozenset(),
        shard: tuple[int, int] | None = None,
        models: list[PlannedModel] | None = None,
    ) -> int:
        """How many requests ``requests`` would yield with the same arguments."""
        if not skip and shard is None:
            chosen = len(self.models if models is None else models)
            return self.rows * chosen * self.job.samples
        return sum(1 for _ in self.requests(skip=skip, shard=shard, models=models))

    def requests(
        self,
        skip: Container[str] = frozenset(),
        shard: tuple[int, int] | None = None,
        models: list[PlannedModel] | None = None,
    ) -> Iterator[Request]:
        """Yield the requests not in ``skip`` (and in ``shard`` I/N if given), in send order.

        ``models`` narrows the requests to those models (default: all). Rows are
        rendered a slice at a time (``PromptTable``), so a long plan holds its
        input and a slice, not every rendered prompt.
        """
        samples = range(self.job.samples)
        chosen = self.models if models is None else models
        skipping = bool(skip)
        for start in self.table.starts():
            ids, messages, tokens = self.table.slice(start)
            for offset, (prompt_id, text, prompt_tokens) in enumerate(
                zip(ids, messages, tokens, strict=True)
            ):
                encoded = text.encode()
                for model in chosen:
                    for sample in samples:
                        key = request_key(model.key_prefix, prompt_id, encoded, sample)
                        if skipping and key in skip:
                            continue
                        if shard is not None and int(key[:8], 16) % shard[1] != shard[0]:
                            continue
                        yield Request(
                            key,
                            start + offset,
                            prompt_id,
                            model,
                            sample,
                            model.encode(encoded),
                            prompt_tokens + model.max_output_tokens,
                        )


def request_key(key_prefix: bytes, prompt_id: str, messages_json: bytes, sample: int) -> str:
    """The stable key of a request: a hash of model, parameters, prompt id, messages, sample.

    The prompt id is part of it so that two rows that happen to read the same
    still get a row each.
    """
    digest = hashlib.blake2b(key_prefix, digest_size=16)
    digest.update(prompt_id.encode())
    digest.update(b"\x00")
    digest.update(messages_json)
    digest.update(b"\x00%d" % sample)
    return digest.hexdigest()


def plan_model(
    index: int,
    spec: ModelSpec,
    job_params: JsonObject,
    stream: bool = False,
    api: Api = "chat",
    with_images: bool = False,
) -> PlannedModel:
    """Merge the model's parameters over the job's and precompute its body pieces.

    A streamed model always asks for usage (``stream_options.include_usage``).
    """
    params = {**job_params, **spec.params}
    params.pop("model", None)
    params.pop("messages", None)
    streamed = spec.stream if spec.stream is not None else stream
    if streamed:
        params["stream"] = True
        params["stream_options"] = {**params.get("stream_options", {}), "include_usage": True}
    else:
        params.pop("stream", None)
        params.pop("stream_options", None)
    chosen_api: Api = spec.api or api
    described: dict[str, Any] = {"model": spec.id, "params": params}
    if chosen_api != "chat":  # keys of chat requests predate formats: they must not move
        described["api"] = chosen_api
    canonical = json.dumps(described, sort_keys=True)
    format = FORMATS[chosen_api].variant(with_images)
    max_output = params.get("max_tokens") or params.get("max_completion_tokens") or 0
    return PlannedModel(
        index=index,
        name=spec.name,
        model_id=spec.id,
        params=params,
        max_output_tokens=int(max_output) if isinstance(max_output, int | float) else 0,
        key_prefix=canonical.encode(),
        encode=_encoder(format, index, spec, params),
        stream=streamed,
        api=chosen_api,
        path=format.path(spec.id),
        response_schema=_response_schema(params.get("response_format")),
        content_type=format.content_type,
    )


def _encoder(format: Format, index: int, spec: ModelSpec, params: JsonObject) -> Encoder:
    """The model's body builder; a parameter its format cannot serve is the model's error."""
    try:
        return format.encoder(spec.id, params)
    except JobError as exc:
        raise JobError(f"{spec.name}: {exc.message}", field=f"models[{index}].params") from None


def _response_schema(response_format: Any) -> JsonObject | None:
    """The JSON Schema a structured-output request asks for ({} for plain JSON mode)."""
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return {}
    spec = response_format.get("json_schema")
    if response_format.get("type") == "json_schema" and isinstance(spec, dict):
        schema = spec.get("schema")
        return schema if isinstance(schema, dict) else {}
    return None


def build_plan(job: Job, frame: pl.DataFrame, template: PromptTemplate) -> Plan:
    """Check every row of ``frame`` renders, and pair the rows with every model of the job."""
    renderer = Renderer.of(job, frame, template)
    table = PromptTable(frame, renderer)
    models = [
        plan_model(i, spec, job.params, job.stream, job.api, renderer.with_images)
        for i, spec in enumerate(job.models)
    ]
    return Plan(job, table, models)
