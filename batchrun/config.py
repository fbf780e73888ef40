"""The job file: its schema and its validation, from strict YAML to a frozen ``Job``.

``load_job`` promises either a valid, frozen ``Job`` or a ``JobError`` whose
message is one line naming the file, the line and the field at fault.
The API key is never part of the job: ``provider.api_key_env`` names the
environment variable that holds it, and ``resolve_api_key`` reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from batchrun.describe import describe
from batchrun.envsubst import interpolate
from batchrun.errors import JobError
from batchrun.formats.base import Api
from batchrun.jobpaths import rebase
from batchrun.params import (
    DEFAULT_MAX_PROMPT_CHARS,
    MAX_PROMPT_CHARS,
    Concurrency,
    PositiveFloat,
    Rate,
    Seconds,
    check_model_id,
    check_params,
    check_share_url,
)
from batchrun.price_spec import Price as Price  # moved: its own module
from batchrun.prompt_spec import InputSpec, PromptSpec, Turn
from batchrun.providers import HttpProvider, MockBatches, MockProvider, MockSettings, Provider
from batchrun.redact import excerpt, register
from batchrun.score_spec import ScoreSpec
from batchrun.section import JobSection
from batchrun.yamlload import dotted, field_lines, line_of, read_yaml

_ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
MOCK_API_KEY = "sk-batchrun-mock"


__all__ = [
    "HttpProvider",
    "InputSpec",
    "MockProvider",
    "MockSettings",
    "PromptSpec",
    "Provider",
    "ScoreSpec",
    "Turn",
]


class ModelSpec(JobSection):
    """One model of the job, with its own parameters and limits."""

    id: Annotated[str, AfterValidator(check_model_id)]
    """The model id sent to the gateway."""
    alias: Annotated[str, Field(pattern=_ALIAS_PATTERN)] | None = None
    """The name the results use for this model (needed when one id is listed twice)."""
    params: Annotated[dict[str, Any], AfterValidator(check_params)] = {}
    """Request body fields for this model, merged over the job's params."""
    rpm: Rate | None = None
    """Requests per minute for this model."""
    tpm: Rate | None = None
    """Tokens per minute for this model."""
    concurrency: Concurrency | None = None
    """Requests of this model in flight at once."""
    stream: bool | None = None
    """Stream this model's answers (api: chat only); the job's stream when unset."""
    api: Api | None = None
    """The API format for this model; the job's api when unset."""
    mode: Literal["online", "batch"] | None = None
    """online, or batch (its provider's batch API: half price, within a day); the job's if unset."""

    @property
    def name(self) -> str:
        """The name the results use for this model."""
        return self.alias or self.id


class Limits(JobSection):
    """Run-wide limits: concurrency, rates, timeouts, retries and prompt size.

    Every limit is bounded: concurrency at most ``MAX_CONCURRENCY`` (10,000);
    rpm and tpm finite, at most ``MAX_RATE``; every time finite, above 0 and
    at most ``MAX_SECONDS`` (a week); retries at most 100; a rendered prompt
    at most ``max_prompt_chars`` characters (default 200,000, at most 10**8).
    """

    concurrency: Concurrency = 32
    """Requests in flight at once, over all models."""
    rpm: Rate | None = None
    """Requests per minute, over all models."""
    tpm: Rate | None = None
    """Tokens per minute, over all models."""
    timeout_s: Seconds = 120.0
    """Seconds one request may take in all."""
    max_retries: Annotated[int, Field(ge=0, le=100)] = 6
    """Times a retryable failure is sent again."""
    max_retry_time_s: Seconds = 600.0
    """Seconds a request may spend being retried."""
    backoff_base_s: Seconds = 0.5
    """The first wait before a retry, doubled each time."""
    backoff_max_s: Seconds = 30.0
    """The longest wait between two retries."""
    adaptive: bool = True
    """Lower concurrency on 429 bursts and raise it again on success."""
    budget_usd: PositiveFloat | None = None
    """Stop sending once the cost reaches this many US dollars."""
    stream_idle_timeout_s: Seconds = 60.0
    """Seconds a stream may stay silent before it counts as cut."""
    max_prompt_chars: Annotated[int, Field(gt=0, le=MAX_PROMPT_CHARS)] = DEFAULT_MAX_PROMPT_CHARS
    """The longest rendered prompt, in characters."""
    batch_size: Annotated[int, Field(gt=0, le=100_000)] | None = None
    """Requests per submitted batch, within each batch API's own limit."""
    max_rate_limited_s: Seconds = 600.0
    """A row is retried after 429s for as long as its model made progress within this time."""
    burst: Annotated[int, Field(ge=1, le=1000)] = 1
    """Requests that may go at once above a pace after a quiet spell or a pause."""
    share: Annotated[str, AfterValidator(check_share_url)] | None = None
    """A redis:// URL: processes on one key share its limits there (the key is never stored)."""


class OutputSpec(JobSection):
    """Where results go and how often they are flushed."""

    path: Annotated[str, Field(min_length=1)]
    """The results file (.parquet); {name}, {date}, {datetime} and {shard} are filled in."""
    flush_every: Annotated[int, Field(gt=0, le=10_000_000)] = 5000
    """Write the results every N answers."""
    flush_seconds: Seconds = 10.0
    """Write the results at least this often, in seconds."""
    fsync_seconds: Annotated[float, Field(ge=0, le=3600)] = 1.0
    """Sync the journal to disk at most this often, in seconds (0: every write)."""
    local_dir: str | None = None
    """Where parts and the local copy of an object-storage output are kept."""
    checkpoint_s: Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)] = 300.0
    """An object-storage output is uploaded this often during a run, in seconds (0: at the end)."""

    @field_validator("path")
    @classmethod
    def _parquet_only(cls, value: str) -> str:
        if not value.endswith(".parquet"):
            raise ValueError(f"{excerpt(value)} should end in .parquet")
        unknown = set(re.findall(r"\{(\w*)\}", value)) - {"name", "date", "datetime", "shard"}
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{sorted(unknown)[0]}}}; "
                "use {name}, {date}, {datetime} or {shard}"
            )
        return value


class Job(JobSection):
    """A whole job file."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    """The job's name, used in output paths and the results' job column."""
    provider: Provider
    """The gateway: mock for the built-in one, or a base_url and its key."""
    input: InputSpec
    """The prompt set."""
    prompt: PromptSpec
    """How each row becomes the messages sent."""
    models: Annotated[list[ModelSpec], Field(min_length=1)]
    """The models to run: ids, or mappings with their own settings."""
    params: Annotated[dict[str, Any], AfterValidator(check_params)] = {}
    """Request body fields for every model (temperature, max_tokens, tools...)."""
    samples: Annotated[int, Field(ge=1, le=1000)] = 1
    """Answers asked for each prompt and model."""
    stream: bool = False
    """Stream the answers (api: chat only), for time-to-first-token."""
    api: Api = "chat"
    """The API format: chat, responses, messages, gemini or embeddings."""
    mode: Literal["online", "batch"] = "online"
    """online, or batch: every model through its provider's batch API unless it says otherwise."""
    limits: Limits = Limits()
    """Concurrency, rates, timeouts, retries and budget."""
    output: OutputSpec
    """Where the results go."""
    prices: dict[str, Price] = {}
    """Prices per model name, for cost_usd and the budget."""
    prices_file: str | None = None
    """A YAML file of prices per model name; the job's prices override it."""
    scores: list[ScoreSpec] = []
    """Scores computed from every response."""

    @field_validator("scores")
    @classmethod
    def _unique_scores(cls, value: list[ScoreSpec]) -> list[ScoreSpec]:
        names = [score.name for score in value]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"scores[{index}] repeats the name {name!r}")
        return value

    @field_validator("provider", mode="before")
    @classmethod
    def _mock_shorthand(cls, value: Any) -> Any:
        if value == "mock":
            return {"mock": {}}
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _model_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"id": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: list[ModelSpec]) -> list[ModelSpec]:
        seen: dict[str, int] = {}
        for index, model in enumerate(value):
            if model.name in seen:
                raise ValueError(
                    f"models[{index}] is named {model.name!r} like models[{seen[model.name]}]; "
                    "give one of them a distinct 'alias' (one model through two api formats, "
                    "or streamed and not, is a fair comparison once they are named apart)"
                )
            seen[model.name] = index
        return value

    @model_validator(mode="after")
    def _distinct_requests(self) -> Job:
        """No two models send the same requests: same id, params, api and streaming."""
        sent: dict[str, int] = {}
        for index, model in enumerate(self.models):
            api = model.api or self.api
            streamed = model.stream if model.stream is not None else self.stream
            same = f"{model.id}\x00{sorted(model.params.items())!r}\x00{api}\x00{streamed}"
            if same in sent:
                raise ValueError(
                    f"models[{index}] sends exactly what models[{sent[same]}] sends "
                    f"({model.id!r} with the same params, api and stream); remove one"
                )
            sent[same] = index
        return self

    @model_validator(mode="after")
    def _stream_needs_chat(self) -> Job:
        for index, model in enumerate(self.models):
            api = model.api or self.api
            streamed = model.stream if model.stream is not None else self.stream
            if streamed and api != "chat":
                raise ValueError(
                    f"models[{index}] ({model.name}) streams with api: {api}; streaming is "
                    "read for api: chat only, set stream: false for it"
                )
        return self


class LoadedJob(BaseModel):
    """A validated job with where it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    job: Job
    path: Path
    sha256: str
    lines: dict[str, int] = {}

    def locate(self, error: JobError) -> JobError:
        """``error`` again, its text prefixed with ``file:line:`` of its field where known.

        The field travels as data (``JobError.field``); the nearest enclosing
        field with a known line is used (``models[1].params`` falls back to
        ``models[1]``).
        """
        if error.field is None:
            return JobError(self.where(str(error)))
        loc = error.field
        while loc and loc not in self.lines:
            loc = re.sub(r"(\.[A-Za-z_]+|\[\d+\])$", "", loc) if "." in loc or "[" in loc else ""
        line = self.lines.get(loc)
        prefix = f"{self.path}:{line}" if line else f"{self.path}"
        return JobError(f"{prefix}: {error}")

    def where(self, message: str) -> str:
        """``message`` prefixed with ``file:line:`` of the field it starts with, if known.

        Transitional: errors raised with ``JobError(..., field=...)`` go
        through ``locate`` instead and need no parsing of their text.
        """
        match = re.match(r"^([A-Za-z_]+(?:\.[A-Za-z_]+|\[\d+\])*)", message)
        field = match.group(1) if match else ""
        while field and field not in self.lines:
            field = (
                re.sub(r"(\.[A-Za-z_]+|\[\d+\])$", "", field)
                if "." in field or "[" in field
                else ""
            )
        line = self.lines.get(field)
        return f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}"


def load_job(path: str | Path, environ: Mapping[str, str] | None = None) -> LoadedJob:
    """Read, interpolate and validate a job file, or raise ``JobError`` with file and line.

    The secrets the job holds (header values) are registered for redaction
    before anything can quote them.
    """
    path = Path(path)
    env = os.environ if environ is None else environ
    data, node, raw = read_yaml(path)
    if not isinstance(data, dict):
        raise JobError(f"{path}:1: the job file should be a mapping of keys (name, provider, ...)")
    data = interpolate(data, env, lambda loc: f"{path}:{line_of(node, loc)}: {dotted(loc)}")
    _register_secrets(data)
    try:
        job = Job.model_validate(data)
    except ValidationError as exc:
        raise JobError(describe(exc, path, node, Job, _BY_NAME)) from None
    return LoadedJob(
        job=rebase(job, path.parent),
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        lines=field_lines(node),
    )


def _register_secrets(data: dict[str, Any]) -> None:
    """Register every value of ``provider.headers`` and credentials in the base URL."""
    provider = data.get("provider")
    if not isinstance(provider, dict):
        return
    headers = provider.get("headers")
    if isinstance(headers, dict):
        for value in headers.values():
            register(value if isinstance(value, str) else None)
    url = provider.get("base_url")
    if isinstance(url, str) and "@" in url:
        with contextlib.suppress(ValueError):
            parts = urllib.parse.urlsplit(url)
            register(parts.password)
            register(parts.username)


def resolve_api_key(job: Job, environ: Mapping[str, str] | None = None) -> str | None:
    """The key for the job's provider, from the environment only; ``JobError`` if unset."""
    env = os.environ if environ is None else environ
    if isinstance(job.provider, MockProvider):
        return MOCK_API_KEY
    if job.provider.api_key_file is not None:
        path = Path(job.provider.api_key_file).expanduser()
        try:
            key = path.read_text().strip()
        except OSError as exc:
            raise JobError(
                f"provider.api_key_file: cannot read {path} ({exc.strerror or exc}); "
                "point it at a file holding only the key"
            ) from None
        if not key:
            raise JobError(f"provider.api_key_file: {path} is empty; put the key in it")
        register(key)
        return key
    name = job.provider.api_key_env
    if name is None:
        return None
    key = env.get(name, "").strip()
    if not key:
        raise JobError(
            f"provider.api_key_env: the environment variable {name} is not set; "
            f"export {name}=<your key> before running"
        )
    register(key)
    return key


_BY_NAME: dict[str, type[BaseModel]] = {
    "provider": HttpProvider,
    "input": InputSpec,
    "prompt": PromptSpec,
    "models": ModelSpec,
    "limits": Limits,
    "output": OutputSpec,
    "mock": MockSettings,
    "batches": MockBatches,
    "messages": Turn,
    "prices": Price,
    "scores": ScoreSpec,
}
