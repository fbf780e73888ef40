"""The request list: one request per (row, model, sample), each with a stable key.

A ``Plan`` renders every row once and then yields requests lazily, rows in
order and models interleaved within each row, so a run stopped halfway has
covered every model alike. The request key is a hash of the prompt id and
what is sent (messages, model id, parameters, sample), so a rerun can tell
which requests are already done and an edited parameter sends only what
changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Container, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import polars as pl

from batchrun.config import Job, ModelSpec
from batchrun.dataset import PROMPT_ID
from batchrun.errors import JobError
from batchrun.templates import PromptTemplate

PROMPT_COLUMN = "prompt"
MESSAGES_COLUMN = "messages"
_CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class PlannedModel:
    """A model of the job with its merged parameters, ready to build bodies."""

    index: int
    name: str
    model_id: str
    params: dict[str, Any]
    max_output_tokens: int
    key_prefix: bytes
    body_head: bytes
    body_tail: bytes
    stream: bool = False


class Request(NamedTuple):
    """One request to send. ``body`` is the exact JSON that goes on the wire."""

    key: str
    row: int
    prompt_id: str
    model: PlannedModel
    sample: int
    body: bytes
    estimated_tokens: int


class Plan:
    """Every request of a job, rendered once and produced on demand."""

    _SLICE = 10_000

    def __init__(self, job: Job, prompts: pl.DataFrame, models: list[PlannedModel]) -> None:
        self.job = job
        self.prompts = prompts
        self._tokens = prompts.get_column(MESSAGES_COLUMN).str.len_chars() // _CHARS_PER_TOKEN + 1
        self.models = models

    @property
    def total(self) -> int:
        """How many requests the job has in all."""
        return self.rows * len(self.models) * self.job.samples

    @property
    def rows(self) -> int:
        """How many prompts the job has."""
        return self.prompts.height

    def estimated_input_tokens(self) -> int:
        """The estimated prompt tokens of every request together."""
        return int(self._tokens.sum()) * len(self.models) * self.job.samples

    def requests(
        self,
        skip: Container[str] = frozenset(),
        shard: tuple[int, int] | None = None,
        models: list[PlannedModel] | None = None,
    ) -> Iterator[Request]:
        """Yield the requests not in ``skip`` (and in ``shard`` I/N if given), in send order.

        ``models`` narrows the requests to those models (default: all). Rows are
        read from the prompt table a slice at a time, so a long plan costs no
        more memory than its table.
        """
        samples = range(self.job.samples)
        chosen = self.models if models is None else models
        ids_column = self.prompts.get_column(PROMPT_ID)
        messages_column = self.prompts.get_column(MESSAGES_COLUMN)
        for start in range(0, self.rows, self._SLICE):
            ids = ids_column.slice(start, self._SLICE).to_list()
            messages = messages_column.slice(start, self._SLICE).to_list()
            tokens = self._tokens.slice(start, self._SLICE).to_list()
            for offset, (prompt_id, text, prompt_tokens) in enumerate(
                zip(ids, messages, tokens, strict=True)
            ):
                encoded = text.encode()
                for model in chosen:
                    for sample in samples:
                        key = request_key(model.key_prefix, prompt_id, encoded, sample)
                        if key in skip:
                            continue
                        if shard is not None and int(key[:8], 16) % shard[1] != shard[0]:
                            continue
                        yield Request(
                            key,
                            start + offset,
                            prompt_id,
                            model,
                            sample,
                            model.body_head + encoded + model.body_tail,
                            prompt_tokens + model.max_output_tokens,
                        )

    def keys(self) -> Iterator[str]:
        """Every request key of the job, in send order."""
        for request in self.requests():
            yield request.key


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
    index: int, spec: ModelSpec, job_params: dict[str, Any], stream: bool = False
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
    canonical = json.dumps({"model": spec.id, "params": params}, sort_keys=True)
    head = b'{"model":' + json.dumps(spec.id).encode() + b',"messages":'
    tail = b"".join(
        b"," + json.dumps(name).encode() + b":" + json.dumps(value).encode()
        for name, value in params.items()
    )
    max_output = params.get("max_tokens") or params.get("max_completion_tokens") or 0
    return PlannedModel(
        index=index,
        name=spec.name,
        model_id=spec.id,
        params=params,
        max_output_tokens=int(max_output) if isinstance(max_output, int | float) else 0,
        key_prefix=canonical.encode(),
        body_head=head,
        body_tail=tail + b"}",
        stream=streamed,
    )


def build_plan(job: Job, frame: pl.DataFrame, template: PromptTemplate) -> Plan:
    """Render every row of ``frame`` and pair it with every model of the job."""
    template.check_columns((c for c in frame.columns if c != PROMPT_ID), "the input")
    used = sorted(template.variables)
    for column in used:
        if frame.get_column(column).null_count() == frame.height:
            raise JobError(
                f"prompt: the template uses {{{{ {column} }}}} but column {column!r} is empty "
                "in every row; fill it or change the template"
            )
    fast = template.render_columns(frame)
    if fast is not None:
        messages_series, prompt_series = fast
    else:
        messages_json: list[str] = []
        prompts: list[str] = []
        ids = frame.get_column(PROMPT_ID).to_list()
        for prompt_id, row in zip(ids, frame.select(used).iter_rows(named=True), strict=True):
            messages = template.render(row, prompt_id)
            messages_json.append(json.dumps(messages, ensure_ascii=False, separators=(",", ":")))
            prompts.append(
                next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            )
        messages_series = pl.Series(MESSAGES_COLUMN, messages_json, dtype=pl.String)
        prompt_series = pl.Series(PROMPT_COLUMN, prompts, dtype=pl.String)
    carried = frame.with_columns(
        prompt_series.alias(PROMPT_COLUMN), messages_series.alias(MESSAGES_COLUMN)
    )
    models = [plan_model(i, spec, job.params, job.stream) for i, spec in enumerate(job.models)]
    return Plan(job, carried, models)
