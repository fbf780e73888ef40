"""Every rate-limit dialect of ``batchrun.ratelimits``, read into one advice record."""

from __future__ import annotations

import email.utils

import pytest

from batchrun.classify import retry_after_seconds
from batchrun.ratelimits import Budget, RateLimitAdvice, parse_duration, read_advice

NOW = 1_800_000_000.0


def read(headers: dict[str, str]) -> RateLimitAdvice | None:
    return read_advice(headers, now=lambda: NOW)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    """``Retry-After: 7`` and an HTTP date 30 s ahead both read as a wait."""
    assert read({"Retry-After": "7"}) == RateLimitAdvice(retry_after_s=7.0)
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    advice = read({"Retry-After": date})
    assert advice is not None and advice.retry_after_s == pytest.approx(30.0)


def test_provider_prefixed_copies_are_read_and_the_earliest_wins() -> None:
    """LiteLLM's ``llm_provider-retry-after`` alone is a wait; with others the earliest counts."""
    assert read({"llm_provider-retry-after": "60"}) == RateLimitAdvice(retry_after_s=60.0)
    both = read(
        {"llm_provider-retry-after": "60", "retry-after-ms": "1500", "x-ms-retry-after-ms": "900"}
    )
    assert both is not None and both.retry_after_s == pytest.approx(0.9)
    assert retry_after_seconds({"llm_provider-retry-after": "60"}) == 60.0


def test_openai_budgets_with_go_duration_resets() -> None:
    """``x-ratelimit-*``: the model's budgets, resets ``20ms``, ``6m0s``, continuous."""
    advice = read(
        {
            "x-ratelimit-limit-requests": "600",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "20ms",
            "x-ratelimit-limit-tokens": "23000",
            "x-ratelimit-remaining-tokens": "1000",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert advice == RateLimitAdvice(
        requests=Budget(600, 0, 0.02, fixed=False), tokens=Budget(23000, 1000, 360.0)
    )
    assert not advice.key_wide


def test_litellm_key_budgets_with_reset_at_times_belong_to_the_key() -> None:
    """``x-ratelimit-api_key-*`` and ``..._reset_at`` (a time): the key's fixed window."""
    advice = read(
        {
            "x-ratelimit-api_key-limit-requests": "20",
            "x-ratelimit-api_key-remaining-requests": "3",
            "x-ratelimit-api_key-requests_reset_at": "2027-01-15T08:00:12Z",
        }
    )
    assert advice is not None and advice.requests is None and advice.key_wide
    reset = 1_800_000_012.0 - NOW  # 2027-01-15T08:00:12Z is 1,800,000,012
    assert advice.key_requests == Budget(20, 3, pytest.approx(reset), fixed=True)


def test_rate_limit_type_max_parallel_is_a_concurrency_refusal() -> None:
    """``rate_limit_type: max_parallel_requests`` marks a cap on requests in flight."""
    advice = read({"retry-after": "60", "rate_limit_type": "max_parallel_requests"})
    assert advice is not None and advice.concurrency and advice.retry_after_s == 60.0
    limited = read({"retry-after": "60", "rate_limit_type": "requests"})
    assert limited is not None and not limited.concurrency


def test_anthropic_budgets_with_rfc3339_resets_keep_the_tightest_tokens() -> None:
    """``anthropic-ratelimit-*``: RFC 3339 resets; of input and output tokens the tighter."""
    advice = read(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:02+00:00",
            "anthropic-ratelimit-input-tokens-limit": "1000",
            "anthropic-ratelimit-input-tokens-remaining": "900",
            "anthropic-ratelimit-output-tokens-limit": "1000",
            "anthropic-ratelimit-output-tokens-remaining": "100",
        }
    )
    assert advice is not None
    assert advice.requests == Budget(50, 49, pytest.approx(2.0), fixed=False)
    assert advice.tokens == Budget(1000, 100, None)


def test_answers_without_rate_limit_headers_carry_no_advice() -> None:
    """The common case costs nothing: no advice at all."""
    assert read({"Content-Type": "application/json", "X-Oneapi-Request-Id": "1"}) is None


@pytest.mark.parametrize(
    ("text", "seconds"), [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("bad", None)]
)
def test_go_durations(text: str, seconds: float | None) -> None:
    """OpenAI's resets as Go durations."""
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)
