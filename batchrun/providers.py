"""The provider block of a job: the built-in mock gateway or a real one.

``HttpProvider`` promises a base URL that ``params.check_base_url`` accepts
(no credentials, no plain http off this machine unless allowed), a key
variable that is a variable's *name*, and no key among the headers.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from batchrun.params import Millis, _checked_url
from batchrun.section import JobSection

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class MockBatches(JobSection):
    """How the built-in gateway serves the batch APIs for a mock job (off when absent)."""

    delay_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    """Seconds a batch takes to complete."""
    line_fail_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    """The share of lines answered with an error."""
    expire_batches: Annotated[int, Field(ge=0)] = 0
    """How many of the first batches expire instead of completing."""
    expire_done: Annotated[int, Field(ge=0)] = 0
    """Lines an expiring batch still completes before it expires."""
    invalid_batches: Annotated[int, Field(ge=0)] = 0
    """How many of the first batches fail validation."""
    cut_files: Annotated[int, Field(ge=0)] = 0
    """How many output-file downloads are cut short."""
    missing_files: Annotated[int, Field(ge=0)] = 0
    """How many output-file downloads answer 404."""


class MockSettings(JobSection):
    """Settings of the built-in gateway when ``provider: mock`` is used."""

    latency_ms: Millis = 0.0
    """Milliseconds the built-in gateway takes to answer."""
    model_latency_ms: dict[str, Millis] = {}
    """Milliseconds per model, over latency_ms."""
    latency_sigma: Annotated[float, Field(ge=0, le=3)] = 0.0
    """Spread of the latency (log-normal sigma); 0 answers in exactly latency_ms."""
    accuracy: dict[str, Annotated[float, Field(ge=0, le=1)]] = {}
    """Per model, the share of arithmetic questions it answers right."""
    stream_chunk_ms: Millis = 0.0
    """Milliseconds between the chunks of a streamed answer."""
    models: list[str] | None = None
    """The models the built-in gateway offers; its own list when unset."""
    seed: int = 0
    """The seed of the gateway's random choices, so runs repeat."""
    faults: dict[str, Annotated[float, Field(ge=0, le=1)]] = {}
    """Fault scenarios mixed in at random: {S13: 0.05} answers 5% of requests with S13
    (`batchrun gateway --help` lists every scenario)."""
    batches: MockBatches | None = None
    """Serve the batch APIs, with these delays and faults (off when absent)."""
    ratelimit_dialect: Literal["oneapi", "openai", "litellm", "litellm-key", "anthropic"] = "oneapi"
    """How the gateway speaks of its rate limits: one-api's 429s, or another gateway's headers."""
    key_rpm: Annotated[float, Field(gt=0, le=1e9)] | None = None
    """Requests per minute the gateway allows the key."""
    model_rpm: dict[str, Annotated[float, Field(gt=0, le=1e9)]] = {}
    """Requests per minute the gateway allows each model."""
    model_tpm: dict[str, Annotated[float, Field(gt=0, le=1e12)]] = {}
    """Tokens per minute the gateway allows each model."""
    rate_limit_window_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """The window the gateway counts its limits over, in seconds."""
    max_parallel: Annotated[int, Field(ge=1, le=100_000)] | None = None
    """Requests the gateway lets the key have in flight at once."""

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, value: dict[str, float]) -> dict[str, float]:
        if value:
            from batchrun.gateway.scenarios import SCENARIOS

            unknown = sorted(set(value) - set(SCENARIOS))
            if unknown:
                raise ValueError(
                    f"unknown fault scenario {unknown[0]!r}; `batchrun gateway --help` lists them"
                )
        return value


class MockProvider(JobSection):
    """Selects the built-in gateway, started in-process on 127.0.0.1."""

    mock: MockSettings = MockSettings()
    """Settings of the built-in gateway."""


class HttpProvider(JobSection):
    """A real OpenAI-compatible gateway."""

    base_url: Annotated[str, Field(min_length=1)]
    """The gateway's OpenAI-compatible base URL, such as https://aihubmix.com/v1."""
    api_key_env: str | None = None
    """The name of the environment variable that holds the key (never the key)."""
    api_key_file: Annotated[str, Field(min_length=1)] | None = None
    """A file that holds only the key, instead of api_key_env."""
    headers: dict[str, str] = {}
    """Extra headers sent with every request; never a key."""
    allow_insecure_http: bool = False
    """Allow plain http:// to a host other than this machine."""

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _checked_url(value, allow_insecure_http=True)

    @field_validator("api_key_env")
    @classmethod
    def _names_a_variable(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(
                "api_key_env should name an environment variable, not hold the key; "
                "write api_key_env: MY_KEY (the variable's name, without ${...})"
            )
        return value

    @model_validator(mode="after")
    def _secure_transport(self) -> HttpProvider:
        _checked_url(self.base_url, self.allow_insecure_http)
        if self.api_key_env and self.api_key_file:
            raise ValueError("give api_key_env or api_key_file, not both")
        return self

    @field_validator("headers")
    @classmethod
    def _no_auth_header(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if name.lower() in {"authorization", "x-api-key", "api-key", "x-goog-api-key"}:
                raise ValueError(
                    f"header {name!r} would put a key in the job file; "
                    "name its environment variable in api_key_env instead"
                )
            if not _HEADER_NAME.match(name) or _CONTROL.search(text):
                raise ValueError(
                    f"header {name[:40]!r} has a malformed name or a line break or control "
                    "character in its value; write it on one line"
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
