"""The job file: its schema, YAML loading, ``${ENV}`` interpolation and validation.

``load_job`` promises either a valid, frozen ``Job`` or a ``JobError`` whose
message is one line naming the file, the line and the field at fault.
The API key is never part of the job: ``provider.api_key_env`` names the
environment variable that holds it, and ``resolve_api_key`` reads it.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from batchrun.errors import JobError

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
MOCK_API_KEY = "sk-batchrun-mock"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MockSettings(_Strict):
    """Settings of the built-in gateway when ``provider: mock`` is used."""

    latency_ms: Annotated[float, Field(ge=0)] = 0.0
    model_latency_ms: dict[str, Annotated[float, Field(ge=0)]] = {}
    latency_sigma: Annotated[float, Field(ge=0, le=3)] = 0.0
    accuracy: dict[str, Annotated[float, Field(ge=0, le=1)]] = {}
    stream_chunk_ms: Annotated[float, Field(ge=0)] = 0.0
    models: list[str] | None = None
    seed: int = 0


class MockProvider(_Strict):
    """Selects the built-in gateway, started in-process on 127.0.0.1."""

    mock: MockSettings = MockSettings()


class HttpProvider(_Strict):
    """A real OpenAI-compatible gateway."""

    base_url: Annotated[str, Field(min_length=1)]
    api_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    api_key_file: Annotated[str, Field(min_length=1)] | None = None
    headers: dict[str, str] = {}
    allow_insecure_http: bool = False

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parsed = urllib.parse.urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"{value!r} is not an http(s) URL; write it with its scheme, "
                "for example https://aihubmix.com/v1"
            )
        try:
            parsed.port  # noqa: B018  (raises on a malformed port)
        except ValueError:
            raise ValueError(f"{value!r} has a malformed port") from None
        return value.rstrip("/")

    @model_validator(mode="after")
    def _secure_transport(self) -> HttpProvider:
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        if (
            self.base_url.startswith("http://")
            and not _is_loopback(host)
            and not self.allow_insecure_http
        ):
            raise ValueError(
                f"plain http:// to {host} would send the key unencrypted; use https://, "
                "or set provider.allow_insecure_http: true if you mean it"
            )
        if self.api_key_env and self.api_key_file:
            raise ValueError("give api_key_env or api_key_file, not both")
        return self

    @field_validator("headers")
    @classmethod
    def _no_auth_header(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in {"authorization", "x-api-key", "api-key"}:
                raise ValueError(
                    f"header {name!r} would put a key in the job file; "
                    "name its environment variable in api_key_env instead"
                )
        return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    """Where the prompt set comes from."""

    path: Annotated[str, Field(min_length=1)]
    id_column: str | None = None
    limit: Annotated[int, Field(gt=0)] | None = None
    format: Literal["parquet", "csv"] | None = None


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class ModelSpec(_Strict):
    """One model of the job, with its own parameters and limits."""

    id: Annotated[str, Field(min_length=1)]
    alias: Annotated[str, Field(pattern=_ALIAS_PATTERN)] | None = None
    params: dict[str, Any] = {}
    rpm: PositiveFloat | None = None
    tpm: PositiveFloat | None = None
    concurrency: PositiveInt | None = None
    stream: bool | None = None
    api: Literal["chat", "responses", "messages", "gemini", "embeddings"] | None = None

    @property
    def name(self) -> str:
        """The name the results use for this model."""
        return self.alias or self.id


class Limits(_Strict):
    """Run-wide limits: concurrency, rates, timeouts and retries."""

    concurrency: PositiveInt = 32
    rpm: PositiveFloat | None = None
    tpm: PositiveFloat | None = None
    timeout_s: PositiveFloat = 120.0
    max_retries: Annotated[int, Field(ge=0, le=100)] = 6
    max_retry_time_s: PositiveFloat = 600.0
    backoff_base_s: PositiveFloat = 0.5
    backoff_max_s: PositiveFloat = 30.0
    adaptive: bool = True
    budget_usd: PositiveFloat | None = None
    stream_idle_timeout_s: PositiveFloat = 60.0
    # A row is retried after 429s for as long as its model made progress within this time.
    max_rate_limited_s: PositiveFloat = 600.0
    # Requests that may go at once above a pace (declared or announced) after a quiet spell
    # or a pause: no one-second interval carries more than the pace plus this.
    burst: Annotated[int, Field(ge=1, le=1000)] = 1


class OutputSpec(_Strict):
    """Where results go and how often they are flushed."""

    path: Annotated[str, Field(min_length=1)]
    flush_every: PositiveInt = 5000
    flush_seconds: PositiveFloat = 10.0

    @field_validator("path")
    @classmethod
    def _parquet_only(cls, value: str) -> str:
        if not value.endswith(".parquet"):
            raise ValueError(f"{value!r} should end in .parquet")
        unknown = set(re.findall(r"\{(\w*)\}", value)) - {"name", "date", "datetime", "shard"}
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{sorted(unknown)[0]}}}; "
                "use {name}, {date}, {datetime} or {shard}"
            )
        return value


def _provider_kind(value: Any) -> str:
    if isinstance(value, MockProvider) or value == "mock":
        return "mock"
    if isinstance(value, dict) and "mock" in value:
        return "mock"
    return "http"


Provider = Annotated[
    Annotated[MockProvider, Tag("mock")] | Annotated[HttpProvider, Tag("http")],
    Discriminator(_provider_kind),
]


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
    params: dict[str, Any] = {}
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
    """Read, interpolate and validate a job file, or raise ``JobError`` with file and line."""
    path = Path(path)
    env = os.environ if environ is None else environ
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise JobError(f"{path}: no such job file") from None
    except OSError as exc:
        raise JobError(f"{path}: cannot read the job file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JobError(f"{path}: the job file is not UTF-8 text") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise JobError(f"{path}:{line}: YAML syntax error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise JobError(f"{path}: YAML error: {exc}") from None
    if not isinstance(data, dict):
        raise JobError(f"{path}:1: the job file should be a mapping of keys (name, provider, ...)")
    data = _interpolate(data, (), path, node, env)
    try:
        job = Job.model_validate(data)
    except ValidationError as exc:
        raise JobError(_describe(exc, path, node)) from None
    return LoadedJob(
        job=job, path=path, sha256=hashlib.sha256(raw).hexdigest(), lines=_field_lines(node)
    )


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
    return key


def _interpolate(
    value: Any,
    loc: tuple[str | int, ...],
    path: Path,
    root: yaml.Node | None,
    env: Mapping[str, str],
) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of the document."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, k), path, root, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), path, root, env) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            line = _line_of(root, loc)
            raise JobError(
                f"{path}:{line}: {_dotted(loc)}: environment variable {name} is not set; "
                f"export it or write ${{{name}:-default}}"
            )

        return _ENV_PATTERN.sub(substitute, value)
    return value


def _describe(exc: ValidationError, path: Path, root: yaml.Node | None) -> str:
    """Turn pydantic's first error into ``file:line: field: what to do``."""
    errors = exc.errors()
    # A misspelt key also makes the right one "missing": name the misspelling first.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = _clean_loc(first["loc"])
    line = _line_of(root, loc)
    field = _dotted(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        known = sorted(parent.model_fields) if parent else []
        unknown = str(loc[-1])
        close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        message = f"unknown key {unknown!r}; {hint}"
    elif first["type"] == "missing":
        message = "this key is required"
    else:
        message = str(first["msg"]).removeprefix("Value error, ")
        if "input" in first and first["type"] not in {"value_error", "assertion_error"}:
            message += f" (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}:{line}: {field}: {message}{more}"


def _clean_loc(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """Drop the union tags pydantic puts into locations (``provider.http.base_url``)."""
    parts = tuple(loc)
    if len(parts) >= 2 and parts[0] == "provider" and parts[1] in ("mock", "http"):
        return (parts[0], *parts[2:])
    return parts


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The pydantic model that sits at a location of the job, for key suggestions."""
    model: type[BaseModel] | None = Job
    skip_key = False
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        if skip_key:  # a key of a mapping field such as prices: {model: ...}
            skip_key = False
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _model_of(field.annotation, part)
        skip_key = part in _MAPPING_FIELDS
    return model


_MAPPING_FIELDS = frozenset({"prices"})


def _model_of(annotation: Any, name: str) -> type[BaseModel] | None:
    by_name: dict[str, type[BaseModel]] = {
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
    if name in by_name:
        return by_name[name]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int:
    """The 1-based line of the deepest node of ``loc`` that exists in the YAML tree."""
    node = root
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    child = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _field_lines(root: yaml.Node | None) -> dict[str, int]:
    """The 1-based line of every key in the document, by dotted path."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, loc: tuple[str | int, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                here = (*loc, str(key_node.value))
                lines[_dotted(here)] = key_node.start_mark.line + 1
                walk(value_node, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, child in enumerate(node.value):
                here = (*loc, index)
                lines[_dotted(here)] = child.start_mark.line + 1
                walk(child, here)

    if root is not None:
        walk(root, ())
    return lines


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
