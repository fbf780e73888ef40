"""What a gateway offers and what is left on the key: the model list and the balance.

``parse_models`` promises the model ids of any of the three list shapes
one-api and new-api send (``{"object": "list", "data"}``,
``{"success": true, "data"}``, and both together). ``parse_balance`` turns
the billing endpoints into dollars: ``/dashboard/billing/subscription``
(``hard_limit_usd``) minus ``/dashboard/billing/usage`` (``total_usage``,
in cents), new-api's ``/api/usage/token/``, or ``/api/user/self`` (with the
account's access token, not the API key), the last two in quota units where
500,000 = $1.
Both raise ``CatalogError`` with the gateway's own words when it refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchrun.errors import CatalogError
from batchrun.wire import JsonObject

QUOTA_PER_USD = 500_000
UNLIMITED_USD = 100_000_000


@dataclass(frozen=True)
class ModelInfo:
    """One model the gateway offers."""

    id: str
    owned_by: str | None
    created: int | None


@dataclass(frozen=True)
class Balance:
    """What is left on the key, in US dollars (None when unlimited)."""

    remaining_usd: float | None
    used_usd: float | None
    limit_usd: float | None
    source: str

    @property
    def unlimited(self) -> bool:
        """Whether the gateway reports no limit."""
        return self.remaining_usd is None


def _error_of(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return "the answer is not a JSON object"
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if isinstance(error, str):
        return error
    if payload.get("success") is False:
        return str(payload.get("message") or "the gateway said no")
    return None


def parse_models(payload: Any) -> list[ModelInfo]:
    """The models of a ``GET /v1/models`` answer, in any of its shapes."""
    problem = _error_of(payload)
    if problem:
        raise CatalogError(problem)
    data = payload.get("data")
    if not isinstance(data, list):
        raise CatalogError("the model list has no data array")
    models = []
    for item in data:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            created = item.get("created")
            owner = item.get("owned_by")
            models.append(
                ModelInfo(
                    item["id"],
                    owner if isinstance(owner, str) else None,
                    created if isinstance(created, int) else None,
                )
            )
        elif isinstance(item, str):
            models.append(ModelInfo(item, None, None))
    return models


def parse_subscription(subscription: Any, usage: Any) -> Balance:
    """Balance from ``/dashboard/billing/subscription`` and ``/dashboard/billing/usage``."""
    for payload in (subscription, usage):
        problem = _error_of(payload)
        if problem:
            raise CatalogError(problem)
    limit = float(subscription.get("hard_limit_usd") or 0.0)
    used = float(usage.get("total_usage") or 0.0) / 100.0
    if limit >= UNLIMITED_USD:
        return Balance(None, used, None, "dashboard/billing")
    return Balance(max(limit - used, 0.0), used, limit, "dashboard/billing")


def _data_of(payload: Any, what: str) -> JsonObject:
    """The ``data`` object of a new-api answer; ``CatalogError`` with its error otherwise."""
    problem = _error_of(payload)
    if problem or not isinstance(payload.get("data"), dict):
        raise CatalogError(problem or f"no data in {what}")
    data: JsonObject = payload["data"]
    return data


def parse_user_self(payload: Any) -> Balance:
    """Balance from ``/api/user/self`` (quota left and used, 500,000 = $1)."""
    data = _data_of(payload, "the user answer")
    left = float(data.get("quota") or 0) / QUOTA_PER_USD
    used = float(data.get("used_quota") or 0) / QUOTA_PER_USD
    return Balance(left, used, left + used, "api/user/self")


def parse_token_usage(payload: Any) -> Balance:
    """Balance from new-api's ``/api/usage/token/`` (quota units: 500,000 = $1)."""
    data = _data_of(payload, "the token usage answer")
    used = float(data.get("total_used") or 0) / QUOTA_PER_USD
    if data.get("unlimited_quota"):
        return Balance(None, used, None, "api/usage/token")
    available = float(data.get("total_available") or 0) / QUOTA_PER_USD
    granted = float(data.get("total_granted") or 0) / QUOTA_PER_USD
    return Balance(available, used, granted or None, "api/usage/token")
