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
    # Each field's docstring is its description: the one source of the schema and the docs.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class MockSettings(_Strict):
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


class MockProvider(_Strict):
    """Selects the built-in gateway, started in-process on 127.0.0.1."""

    mock: MockSettings = MockSettings()
    """Settings of the built-in gateway."""


class HttpProvider(_Strict):
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
