"""The provider block of a job: the built-in mock gateway or a real one.

``HttpProvider`` promises a base URL that ``params.check_base_url`` accepts
(no credentials, no plain http off this machine unless allowed), a key
variable that is a variable's *name*, and no key among the headers.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from batchrun.params import Millis, _checked_url

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MockBatches(_Strict):
    """How the built-in gateway serves the batch APIs for a mock job (off when absent)."""

    delay_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    line_fail_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    expire_batches: Annotated[int, Field(ge=0)] = 0
    expire_done: Annotated[int, Field(ge=0)] = 0
    invalid_batches: Annotated[int, Field(ge=0)] = 0
    cut_files: Annotated[int, Field(ge=0)] = 0
    missing_files: Annotated[int, Field(ge=0)] = 0


class MockSettings(_Strict):
    """Settings of the built-in gateway when ``provider: mock`` is used."""

    latency_ms: Millis = 0.0
    model_latency_ms: dict[str, Millis] = {}
    latency_sigma: Annotated[float, Field(ge=0, le=3)] = 0.0
    accuracy: dict[str, Annotated[float, Field(ge=0, le=1)]] = {}
    stream_chunk_ms: Millis = 0.0
    models: list[str] | None = None
    seed: int = 0
    # Fault scenarios mixed in at random: {"S13": 0.05} answers 5% of requests with S13
    # (`batchrun gateway --help` lists every scenario).
    faults: dict[str, Annotated[float, Field(ge=0, le=1)]] = {}
    batches: MockBatches | None = None

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


class MockProvider(_Strict):
    """Selects the built-in gateway, started in-process on 127.0.0.1."""

    mock: MockSettings = MockSettings()


class HttpProvider(_Strict):
    """A real OpenAI-compatible gateway."""

    base_url: Annotated[str, Field(min_length=1)]
    api_key_env: str | None = None
    api_key_file: Annotated[str, Field(min_length=1)] | None = None
    headers: dict[str, str] = {}
    allow_insecure_http: bool = False

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
