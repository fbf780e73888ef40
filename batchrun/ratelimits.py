"""What a gateway's headers say about its rate limits, in every dialect, as one typed record.

``read_advice(headers)`` reads one answer's headers (a 200 or a 429) and
returns a ``RateLimitAdvice``, or None when the answer says nothing about
limits. The limiter (``batchrun.limits``) decides what to do with it; this
module only reads. Every dialect it understands is in this table:

=====================================================  ==========  ===========================
header (case-insensitive)                              dialect     read as
=====================================================  ==========  ===========================
``Retry-After``                                        HTTP        seconds, or an HTTP date
``retry-after-ms``                                     OpenAI      milliseconds
``<prefix>-retry-after`` / ``<prefix>-retry-after-ms`` LiteLLM,    the same wait, copied from
(``llm_provider-retry-after``, ``x-ms-retry-after-ms``)  Azure      a provider; the earliest wins
``x-ratelimit-limit-{requests,tokens}``                OpenAI      the model's limit a minute
``x-ratelimit-remaining-{requests,tokens}``            OpenAI      left in the window now
``x-ratelimit-reset-{requests,tokens}``                OpenAI      Go duration (``1s``,
                                                                   ``6m0s``, ``20ms``) until the
                                                                   window is whole again; slots
                                                                   come back continuously
``x-ratelimit-<scope>-{limit,remaining}-{requests,     LiteLLM     the key's (``api_key``, or
tokens}`` (scope ``api_key``, ``team``, ``user`` ...)              team/user) per-minute window
``x-ratelimit-<scope>-..._reset_at`` (or ``-reset-at``) LiteLLM    the time the fixed window
                                                                   resets: epoch seconds,
                                                                   RFC 3339 or an HTTP date
``rate_limit_type`` (or ``x-ratelimit-type``)          LiteLLM     which limit refused:
                                                                   ``max_parallel_requests`` is
                                                                   a cap on requests in flight
``anthropic-ratelimit-{requests,tokens,input-tokens,   Anthropic   limit a minute, remaining,
output-tokens}-{limit,remaining,reset}``                           reset as an RFC 3339 time;
                                                                   a bucket refilled
                                                                   continuously
=====================================================  ==========  ===========================

OpenAI's and Anthropic's budgets belong to the model (their limits are per
model); LiteLLM's scoped budgets belong to the key. When several token
budgets are given (Anthropic's input and output tokens), the tightest is
kept.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

Now = Callable[[], float]

# Limit types (``rate_limit_type``) that cap requests in flight rather than a rate.
CONCURRENCY_TYPES = ("max_parallel_requests", "parallel", "concurrent")
# The fields a budget header names, after its prefix (OpenAI) or after a scope (LiteLLM).
_FIELDS = ("limit", "remaining", "reset")


@dataclass(frozen=True)
class Budget:
    """One window of a limit as a gateway announced it; None where not said.

    ``limit`` is per minute. ``reset_s`` is, for a continuous window
    (``fixed`` False, OpenAI and Anthropic), the time until the window is
    whole again; for a fixed window (LiteLLM), the time until it starts over.
    """

    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None
    fixed: bool = False

    def tighter(self, other: Budget) -> Budget:
        """Of two budgets of the same kind, the one with the smaller share left."""
        return other if _share(other) < _share(self) else self


@dataclass(frozen=True)
class RateLimitAdvice:
    """Everything one answer's headers said about rate limits.

    ``retry_after_s``: the earliest wait any retry-after header asked for.
    ``requests``/``tokens``: the model's budgets; ``key_requests``/``key_tokens``:
    the key's (LiteLLM's scoped headers). ``limit_type``: which limit refused.
    """

    retry_after_s: float | None = None
    requests: Budget | None = None
    tokens: Budget | None = None
    key_requests: Budget | None = None
    key_tokens: Budget | None = None
    limit_type: str | None = None

    @property
    def concurrency(self) -> bool:
        """Whether the refusal was for requests in flight (max parallel), not for a rate."""
        kind = (self.limit_type or "").lower()
        return any(word in kind for word in CONCURRENCY_TYPES)

    @property
    def key_wide(self) -> bool:
        """Whether the advice is about the key's limits rather than one model's."""
        return self.key_requests is not None or self.key_tokens is not None or self.concurrency


def read_advice(headers: Mapping[str, str], now: Now = time.time) -> RateLimitAdvice | None:
    """The rate-limit advice in ``headers`` (any dialect of the table), or None if none."""
    # Most answers carry none: one search of all the names says so, without a loop.
    names = "\n".join(headers).lower()
    if "retry-after" not in names and "ratelimit" not in names and "rate_limit" not in names:
        return None
    retry: float | None = None
    budgets: dict[tuple[str, str], dict[str, float]] = {}
    fixed: set[tuple[str, str]] = set()
    limit_type: str | None = None
    for raw_name, value in headers.items():
        name = raw_name.lower()
        if "retry-after" in name:
            wait = _retry_after(name, value, now)
            if wait is not None:
                retry = wait if retry is None else min(retry, wait)
        elif name.startswith("x-ratelimit-"):
            if name == "x-ratelimit-type":
                limit_type = value.strip() or None
            else:
                _read_openai_or_litellm(name[12:], value, now, budgets, fixed)
        elif name.startswith("anthropic-ratelimit-"):
            _read_anthropic(name[20:], value, now, budgets)
        elif name == "rate_limit_type":
            limit_type = value.strip() or None
    if retry is None and not budgets and limit_type is None:
        return None

    def budget(scope: str, unit: str) -> Budget | None:
        found = [
            Budget(
                fields.get("limit"), fields.get("remaining"), fields.get("reset_s"), (s, u) in fixed
            )
            for (s, u), fields in budgets.items()
            if s == scope and u.endswith(unit)
        ]
        if not found:
            return None
        best = found[0]
        for other in found[1:]:
            best = best.tighter(other)
        return best

    return RateLimitAdvice(
        retry_after_s=retry,
        requests=budget("model", "requests"),
        tokens=budget("model", "tokens"),
        key_requests=budget("key", "requests"),
        key_tokens=budget("key", "tokens"),
        limit_type=limit_type,
    )


def _read_openai_or_litellm(
    rest: str,
    value: str,
    now: Now,
    budgets: dict[tuple[str, str], dict[str, float]],
    fixed: set[tuple[str, str]],
) -> None:
    """``limit-requests`` (OpenAI, the model's) or ``api_key-remaining-requests`` (LiteLLM)."""
    unit = "requests" if "requests" in rest else "tokens" if "tokens" in rest else None
    if unit is None:
        return
    scope = "model" if rest.startswith(_FIELDS) else "key"
    if "reset_at" in rest or "reset-at" in rest:
        seconds = _time_until(value, now)
        if seconds is not None:
            budgets.setdefault((scope, unit), {})["reset_s"] = seconds
            fixed.add((scope, unit))
        return
    field = next((f for f in ("remaining", "reset", "limit") if f in rest), None)
    number = parse_duration(value) if field == "reset" else _number(value)
    if field is not None and number is not None:
        budgets.setdefault((scope, unit), {})["reset_s" if field == "reset" else field] = number
        if scope == "key":
            fixed.add((scope, unit))


def _read_anthropic(
    rest: str, value: str, now: Now, budgets: dict[tuple[str, str], dict[str, float]]
) -> None:
    """``requests-limit``, ``input-tokens-remaining``, ``tokens-reset`` (an RFC 3339 time)."""
    kind, _, field = rest.rpartition("-")
    if field not in _FIELDS or not kind.endswith(("requests", "tokens")):
        return
    number = _time_until(value, now) if field == "reset" else _number(value)
    if number is not None:
        budgets.setdefault(("model", kind), {})[field.replace("reset", "reset_s")] = number


def _retry_after(name: str, value: str, now: Now) -> float | None:
    """Seconds from ``retry-after-ms``/``*-retry-after-ms`` or ``retry-after``/``*-retry-after``."""
    if name.endswith("retry-after-ms"):
        millis = _number(value)
        return millis / 1000.0 if millis is not None and millis >= 0 else None
    if not name.endswith("retry-after"):
        return None
    seconds = _number(value)
    if seconds is None:
        seconds = _time_until(value, now)
    return seconds if seconds is not None and seconds >= 0 else None


def _time_until(value: str, now: Now) -> float | None:
    """Seconds until ``value``: epoch seconds, RFC 3339/ISO 8601, or an HTTP date; >= 0."""
    text = value.strip()
    moment = _number(text)
    if moment is None:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(text).timestamp()
            except (ValueError, TypeError):
                return None
    return max(0.0, moment - now())


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _share(budget: Budget) -> float:
    if budget.remaining is None:
        return math.inf
    if not budget.limit:
        return budget.remaining
    return budget.remaining / budget.limit


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go-style duration (``1m30.2s``, ``12ms``, ``6m0s``), or None."""
    if not text:
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
