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
from batchrun.providers import HttpProvider, MockProvider, MockSettings, Provider
from batchrun.redact import excerpt, register
from batchrun.yamlload import dotted, field_lines, line_of, read_yaml

_ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
MOCK_API_KEY = "sk-batchrun-mock"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


__all__ = ["HttpProvider", "MockProvider", "MockSettings", "Provider"]


class Turn(_Strict):
    """One templated chat message."""

    role: Literal["system", "user", "assistant", "developer"]
    content: str


class PromptSpec(_Strict):
    """How a row becomes chat messages: ``system`` + ``user``, or a ``messages`` list."""

    system: str | None = None
    user: str | None = None
    messages: list[Turn] | None = None
    image_column: str | None = None
    image_detail: Literal["auto", "low", "high"] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> PromptSpec:
        if self.messages is None and self.user is None:
            raise ValueError("give either 'user' (with an optional 'system') or 'messages'")
        if self.messages is not None and (self.user is not None or self.system is not None):
            raise ValueError("give either 'user'/'system' or 'messages', not both")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' is empty; give at least one turn")
        return self

    def turns(self) -> list[Turn]:
        """The templated turns in the order they are sent."""
        if self.messages is not None:
            return list(self.messages)
        turns = [Turn(role="system", content=self.system)] if self.system else []
        assert self.user is not None
        return [*turns, Turn(role="user", content=self.user)]


class InputSpec(_Strict):
    """Where the prompt set comes from, and what to do with empty cells and mixed files.

    ``nulls``: a cell the templates read that is empty is an error (the
    default), makes its row be skipped, or renders as empty text.
    ``union``: files of a folder or glob with differing columns are refused
    unless this is true.
    """

    path: Annotated[str, Field(min_length=1)]
    id_column: str | None = None
    limit: Annotated[int, Field(gt=0)] | None = None
    format: Literal["parquet", "csv"] | None = None
    nulls: Literal["skip", "empty", "error"] = "error"
    union: bool = False


class ModelSpec(_Strict):
    """One model of the job, with its own parameters and limits."""

    id: Annotated[str, AfterValidator(check_model_id)]
    alias: Annotated[str, Field(pattern=_ALIAS_PATTERN)] | None = None
    params: Annotated[dict[str, Any], AfterValidator(check_params)] = {}
    rpm: Rate | None = None
    tpm: Rate | None = None
    concurrency: Concurrency | None = None
    stream: bool | None = None
    api: Literal["chat", "responses", "messages", "gemini", "embeddings"] | None = None

    @property
    def name(self) -> str:
        """The name the results use for this model."""
        return self.alias or self.id


class Limits(_Strict):
    """Run-wide limits: concurrency, rates, timeouts, retries and prompt size.

    Every limit is bounded: concurrency at most ``MAX_CONCURRENCY`` (10,000);
    rpm and tpm finite, at most ``MAX_RATE``; every time finite, above 0 and
    at most ``MAX_SECONDS`` (a week); retries at most 100; a rendered prompt
    at most ``max_prompt_chars`` characters (default 200,000, at most 10**8).
    """

    concurrency: Concurrency = 32
    rpm: Rate | None = None
    tpm: Rate | None = None
    timeout_s: Seconds = 120.0
    max_retries: Annotated[int, Field(ge=0, le=100)] = 6
    max_retry_time_s: Seconds = 600.0
    backoff_base_s: Seconds = 0.5
    backoff_max_s: Seconds = 30.0
    adaptive: bool = True
    budget_usd: PositiveFloat | None = None
    stream_idle_timeout_s: Seconds = 60.0
    max_prompt_chars: Annotated[int, Field(gt=0, le=MAX_PROMPT_CHARS)] = DEFAULT_MAX_PROMPT_CHARS
    share: Annotated[str, AfterValidator(check_share_url)] | None = None


class OutputSpec(_Strict):
    """Where results go and how often they are flushed."""

    path: Annotated[str, Field(min_length=1)]
    flush_every: Annotated[int, Field(gt=0, le=10_000_000)] = 5000
    flush_seconds: Seconds = 10.0
    local_dir: str | None = None  # parts and local copy of an object-storage output

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


class ScoreSpec(_Strict):
    """One score computed from every response: a grader against an expected value."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]
    grader: Literal["exact", "contains", "regex", "json_valid", "json_schema", "numeric", "judge"]
    expected_column: str | None = None
    expected: str | float | int | None = None
    pattern: str | None = None
    json_schema: dict[str, Any] | None = None
    tolerance: Annotated[float, Field(ge=0)] = 1e-9
    rel_tolerance: Annotated[float, Field(ge=0)] = 0.0
    case_sensitive: bool = False
    model: str | None = None
    rubric: str | None = None
    scale: tuple[float, float] = (1.0, 10.0)

    @model_validator(mode="after")
    def _complete(self) -> ScoreSpec:
        needs_expected = {"exact", "contains", "numeric"}
        has_expected = self.expected_column is not None or self.expected is not None
        if self.grader in needs_expected and not has_expected:
            raise ValueError(
                f"the {self.grader} grader needs expected_column (a column of the input) "
                "or expected (a literal)"
            )
        if self.grader == "regex" and self.pattern is None and self.expected_column is None:
            raise ValueError("the regex grader needs pattern or expected_column")
        if self.grader == "json_schema" and self.json_schema is None and not has_expected:
            raise ValueError("the json_schema grader needs json_schema or expected_column")
        if self.grader == "judge" and (self.model is None or self.rubric is None):
            raise ValueError("the judge grader needs model (the judge's id) and rubric")
        if self.scale[0] >= self.scale[1]:
            raise ValueError("scale should be [low, high] with low < high")
        return self


class Price(_Strict):
    """What a model costs, in US dollars per million tokens."""

    input: Annotated[float, Field(ge=0)]
    output: Annotated[float, Field(ge=0)]
    cached_input: Annotated[float, Field(ge=0)] | None = None


class Job(_Strict):
    """A whole job file."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    provider: Provider
    input: InputSpec
    prompt: PromptSpec
    models: Annotated[list[ModelSpec], Field(min_length=1)]
    params: Annotated[dict[str, Any], AfterValidator(check_params)] = {}
    samples: Annotated[int, Field(ge=1, le=1000)] = 1
    stream: bool = False
    api: Literal["chat", "responses", "messages", "gemini", "embeddings"] = "chat"
    limits: Limits = Limits()
    output: OutputSpec
    prices: dict[str, Price] = {}
    prices_file: str | None = None
    scores: list[ScoreSpec] = []

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
        sent: dict[str, int] = {}
        for index, model in enumerate(value):
            if model.name in seen:
                raise ValueError(
                    f"models[{index}] is named {model.name!r} like models[{seen[model.name]}]; "
                    "give one of them a distinct 'alias'"
                )
            seen[model.name] = index
            same = f"{model.id}\x00{sorted(model.params.items())!r}"
            if same in sent:
                raise ValueError(
                    f"models[{index}] sends exactly what models[{sent[same]}] sends "
                    f"({model.id!r} with the same params); remove one"
                )
            sent[same] = index
        return value

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
    "messages": Turn,
    "prices": Price,
    "scores": ScoreSpec,
}
