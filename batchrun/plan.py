"""The request list: one request per (row, model, sample), each with a stable key.

A ``Plan`` renders every row once and then yields requests lazily, rows in
order and models interleaved within each row, so a run stopped halfway has
covered every model alike. The request key is a hash of the prompt id and
what is sent (messages, model id, parameters, sample), so a rerun can tell
which requests are already done and an edited parameter sends only what
changed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from batchrun.config import Job, ModelSpec
from batchrun.dataset import PROMPT_ID
from batchrun.errors import JobError
from batchrun.formats import FORMATS, Api, Format
from batchrun.formats.base import Encoder, last_user_content
from batchrun.magic import sniff
from batchrun.media_input import MediaColumns
from batchrun.record import Request as Request  # moved: the record owns it
from batchrun.templates import PromptTemplate
from batchrun.wire import JsonObject

PROMPT_COLUMN = "prompt"
MESSAGES_COLUMN = "messages"
# The messages as sent, where they differ from the stored ``messages`` (a local image is
# inlined on the wire but stored as its path). Columns named ``__*`` are not carried.
WIRE_COLUMN = "__wire_messages"
_CHARS_PER_TOKEN = 4


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
    """Every request of a job, rendered once and produced on demand."""

    _SLICE = 10_000

    def __init__(self, job: Job, prompts: pl.DataFrame, models: list[PlannedModel]) -> None:
        self.job = job
        self.prompts = prompts
        self._tokens = prompts.get_column(MESSAGES_COLUMN).str.len_chars() // _CHARS_PER_TOKEN + 1
        self.models = models

    @property
    def wire_column(self) -> str:
        """The column of the messages as sent (and hashed into request keys)."""
        return WIRE_COLUMN if WIRE_COLUMN in self.prompts.columns else MESSAGES_COLUMN

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
        read from the prompt table a slice at a time, so a long plan costs no
        more memory than its table.
        """
        samples = range(self.job.samples)
        chosen = self.models if models is None else models
        skipping = bool(skip)
        ids_column = self.prompts.get_column(PROMPT_ID)
        messages_column = self.prompts.get_column(self.wire_column)
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


def _user_text(messages: list[Any]) -> str:
    """The last user turn as the ``prompt`` column shows it (text parts only)."""
    content = last_user_content(messages)
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return str(content)


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


IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def image_urls(source: Any, prompt_id: str, base: Path) -> tuple[str, str] | None:
    """The image of a row as sent and as stored: a URL as is; a local file inlined, kept by path.

    A relative file path is read from ``base`` (the input data's folder).
    None when the cell is empty.
    """
    if source is None or source == "":
        return None
    text = str(source)
    if text.startswith(("http://", "https://", "data:")):
        return text, text
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = base / path
    kind = IMAGE_TYPES.get(path.suffix.lower())
    if kind is None:
        raise JobError(
            f"row {prompt_id!r}: {text!r} is neither a URL nor a .png/.jpg/.gif/.webp file",
            field="prompt.image_column",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JobError(
            f"row {prompt_id!r}: cannot read {path} ({exc.strerror or exc})",
            field="prompt.image_column",
        ) from None
    if sniff(data) != kind:
        raise JobError(
            f"row {prompt_id!r}: {text} is named {path.suffix} but its bytes are "
            f"{sniff(data) or 'no image format batchrun knows'}",
            field="prompt.image_column",
        )
    return f"data:{kind};base64," + base64.b64encode(data).decode(), text


def with_image(messages: list[Any], url: str, detail: str | None) -> list[Any]:
    """``messages`` with the last user turn as text plus the image at ``url`` (a copy)."""
    image: JsonObject = {"url": url}
    if detail:
        image["detail"] = detail
    changed = [dict(message) for message in messages]
    for message in reversed(changed):
        if message["role"] == "user":
            message["content"] = [
                {"type": "text", "text": message["content"]},
                {"type": "image_url", "image_url": image},
            ]
            break
    return changed


def data_folder(input_path: str) -> Path:
    """The folder relative file paths in the input's cells are read from."""
    path = Path(input_path)
    return path if path.is_dir() else path.parent


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
    image_column = job.prompt.image_column
    if image_column is not None and image_column not in frame.columns:
        raise JobError(
            f"prompt.image_column: column {image_column!r} is not in the input "
            f"(columns: {', '.join(c for c in frame.columns if c != PROMPT_ID)})"
        )
    media = MediaColumns.of(job, frame)
    # Speed trick, kept because it pays (issue 12): plain ``{{ column }}`` templates render
    # column-wise without Jinja. `batchrun validate` on 100,000 rows takes 0.75 s of CPU this
    # way and 6.5 s row by row; on the overhead benchmark's 10,000 prompts it saves 0.58 s,
    # about 6% of batchrun's CPU for the run (benchmarks/plan.py, benchmarks/run.py).
    fast = template.render_columns(frame) if image_column is None and not media else None
    if fast is not None:
        messages_series, prompt_series = fast
        wire_series = None
    else:
        messages_series, wire_series, prompt_series = _render_rows(
            job, frame, template, used, media
        )
    carried = frame.with_columns(
        prompt_series.alias(PROMPT_COLUMN), messages_series.alias(MESSAGES_COLUMN)
    )
    if wire_series is not None:
        carried = carried.with_columns(wire_series.alias(WIRE_COLUMN))
    models = [
        plan_model(i, spec, job.params, job.stream, job.api, image_column is not None)
        for i, spec in enumerate(job.models)
    ]
    return Plan(job, carried, models)


def _render_rows(
    job: Job, frame: pl.DataFrame, template: PromptTemplate, used: list[str], media: MediaColumns
) -> tuple[pl.Series, pl.Series | None, pl.Series]:
    """Render row by row: the stored messages, the sent ones (if they differ), the prompts.

    Images, audio and documents go on the wire; the stored messages name a
    local image by its path and leave audio and documents to their input
    columns, which the results carry anyway.
    """
    stored: list[str] = []
    wire: list[str] = []
    prompts: list[str] = []
    image_column = job.prompt.image_column
    base = data_folder(job.input.path)
    ids = frame.get_column(PROMPT_ID).to_list()
    columns = sorted({*used, *([image_column] if image_column else []), *media.columns})
    for prompt_id, row in zip(ids, frame.select(columns).iter_rows(named=True), strict=True):
        messages: list[Any] = template.render(row, prompt_id)
        sent = messages
        if image_column is not None:
            urls = image_urls(row[image_column], prompt_id, base)
            if urls is not None:
                sent = with_image(messages, urls[0], job.prompt.image_detail)
                messages = with_image(messages, urls[1], job.prompt.image_detail)
        if media:
            sent = [dict(message) for message in sent]
            media.attach(sent, row, prompt_id, base)
        stored.append(_json(messages))
        wire.append(_json(sent))
        prompts.append(_user_text(messages))
    differs = stored != wire
    return (
        pl.Series(MESSAGES_COLUMN, stored, dtype=pl.String),
        pl.Series(WIRE_COLUMN, wire, dtype=pl.String) if differs else None,
        pl.Series(PROMPT_COLUMN, prompts, dtype=pl.String),
    )


def _json(messages: list[Any]) -> str:
    return json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
