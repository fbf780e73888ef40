"""Offline checks of a job's values: base URLs, model ids, request parameters, limits.

``check_base_url`` promises an http(s) URL with a host, no credentials in it
and no plain http to anything but this machine (unless allowed); every
command that takes a URL calls it. ``check_model_id`` and ``check_params``
promise that what reaches the gateway is what the user meant: no stray
whitespace in an id, no ``"0.2"`` sent as a temperature. Parameters
batchrun does not know pass through unchecked. The bounded types here give
every limit of a job its documented maximum.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from batchrun.errors import JobError
from batchrun.redact import excerpt, register

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NUMERIC_HOST = re.compile(r"^(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}$")
MAX_MODEL_ID_CHARS = 256

# Documented maxima of the limits: far above any real run, low enough that a
# slip (1e9 workers, an infinite timeout) is refused instead of obeyed.
MAX_CONCURRENCY = 10_000
MAX_SECONDS = 7 * 24 * 3600.0
MAX_RATE = 1e9
MAX_PROMPT_CHARS = 100_000_000
DEFAULT_MAX_PROMPT_CHARS = 200_000

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
Millis = Annotated[float, Field(ge=0, le=MAX_SECONDS * 1000, allow_inf_nan=False)]
Rate = Annotated[float, Field(gt=0, le=MAX_RATE, allow_inf_nan=False)]
Concurrency = Annotated[int, Field(gt=0, le=MAX_CONCURRENCY)]


def check_base_url(
    url: str, *, allow_insecure_http: bool = False, field: str = "provider.base_url"
) -> str:
    """``url`` with its scheme lower-cased and no trailing ``/``; ``JobError`` if unusable.

    Scheme and host are compared case-insensitively; a host written as an
    integer or in hex (``0x7f000001``, ``2130706433``) is read as the address
    it stands for before the plain-http guard looks at it.
    """
    try:
        return _checked_url(url, allow_insecure_http)
    except ValueError as exc:
        raise JobError(str(exc), field=field) from None


def _checked_url(url: str, allow_insecure_http: bool) -> str:
    """The body of ``check_base_url``; ``ValueError`` with the message (for pydantic too)."""
    if _CONTROL.search(url) or url != url.strip() or " " in url:
        raise ValueError(
            "the URL holds spaces or control characters; write it on one line, unquoted"
        )
    parsed = urllib.parse.urlsplit(url)
    if parsed.username is not None or parsed.password is not None:
        register(parsed.password)
        register(parsed.username)
        raise ValueError(
            "the URL holds credentials (user:password@); remove them and name the key's "
            "environment variable in provider.api_key_env"
        )
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(
            f"{excerpt(url)} is not an http(s) URL; write it with its scheme, "
            "for example https://aihubmix.com/v1"
        )
    try:
        parsed.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise ValueError(f"{excerpt(url)} has a malformed port") from None
    host = parsed.hostname
    if scheme == "http" and not is_loopback(host) and not allow_insecure_http:
        raise ValueError(
            f"plain http:// to {host} would send the key unencrypted; use https://, "
            "or set provider.allow_insecure_http: true if you mean it"
        )
    return urllib.parse.urlunsplit(parsed._replace(scheme=scheme)).rstrip("/")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine, however the address is written."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _address(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` stands for, including integer and hex IPv4 forms."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_share_url(value: str) -> str:
    """A ``limits.share`` URL: ``redis://``, ``rediss://`` or ``unix://`` with a host or path."""
    parts = urllib.parse.urlsplit(value)
    register(parts.password)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ValueError(
            f"{parts.scheme or value[:20]!r} is not a Redis URL scheme; "
            "write redis://HOST:PORT/DB (or rediss://)"
        )
    return value


def check_model_id(value: str) -> str:
    """``value`` if it can be a model id; ``ValueError`` naming what is wrong otherwise."""
    if not value:
        raise ValueError("the model id is empty")
    if value != value.strip():
        raise ValueError(
            f"the model id {excerpt(value)} has spaces around it; the gateway would not "
            "know it, remove them"
        )
    if _CONTROL.search(value):
        raise ValueError(f"the model id {excerpt(value)} holds control characters")
    if len(value) > MAX_MODEL_ID_CHARS:
        raise ValueError(f"the model id is {len(value):,} characters; no model id is that long")
    return value


# name -> (kind, minimum, maximum); kind is "number", "int", "bool" or "stop"
_KNOWN: dict[str, tuple[str, float | None, float | None]] = {
    "temperature": ("number", 0, 2),
    "top_p": ("number", 0, 1),
    "frequency_penalty": ("number", -2, 2),
    "presence_penalty": ("number", -2, 2),
    "max_tokens": ("int", 1, None),
    "max_completion_tokens": ("int", 1, None),
    "max_output_tokens": ("int", 1, None),
    "n": ("int", 1, 128),
    "seed": ("int", -(2**63), 2**63 - 1),
    "top_logprobs": ("int", 0, 20),
    "logprobs": ("bool", None, None),
    "stream": ("bool", None, None),
    "stop": ("stop", None, None),
}


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` unchanged if every parameter batchrun knows has the right type and range.

    ``ValueError`` names the first parameter that does not; unknown
    parameters pass through as they are.
    """
    for name, value in params.items():
        if name in _KNOWN:
            problem = _param_problem(value, *_KNOWN[name])
            if problem:
                raise ValueError(f"{name} should be {problem}, not {_kind_of(value)}")
    return dict(params)


def _param_problem(value: Any, kind: str, low: float | None, high: float | None) -> str | None:
    """What ``value`` should be, or None if it is fine."""
    if kind == "bool":
        return None if isinstance(value, bool) else "true or false"
    if kind == "stop":
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return None
        return "a string or a list of strings"
    span = _span(low, high)
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok and _within(value, low, high) else f"an integer{span}"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return None if ok and _within(value, low, high) else f"a number{span}"


def _within(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _span(low: float | None, high: float | None) -> str:
    if low is not None and high is not None and high < 2**62:
        return f" from {low:g} to {high:g}"
    if low is not None and low > -(2**62):
        return f" of at least {low:g}"
    return ""


def _kind_of(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {excerpt(value, 40)} (write it without quotes)"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    return excerpt(value, 40)
