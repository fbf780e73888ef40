"""How one built-in gateway behaves: ``GatewaySettings`` and the models it offers by default."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

# Listed (and served) when no model list is configured: a few real-looking ids and the
# generic ones the examples, tests and benchmarks use.
DEFAULT_MODELS = (
    "gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "deepseek-chat",
    "text-embedding-3-small", "model-a", "model-b", "model-c", "model-d", "model-e",
    "judge-model",
)  # fmt: skip

UnknownModels = Literal["refuse", "serve"]


@dataclass
class GatewaySettings:
    """How the built-in gateway behaves. Every field has a healthy default.

    ``unknown_models``: "refuse" answers a model outside ``models`` (or outside
    ``DEFAULT_MODELS`` when no list is given) with new-api's 503 ``model_not_found``,
    as a gateway with no channel for it does; "serve" answers any model name.
    """

    models: list[str] | None = None
    keys: list[str] | None = None
    latency_ms: float = 0.0
    model_latency_ms: dict[str, float] = field(default_factory=dict)
    latency_sigma: float = 0.0
    accuracy: dict[str, float] = field(default_factory=dict)
    default_accuracy: float = 1.0
    model_scenarios: dict[str, str] = field(default_factory=dict)
    fault_rates: dict[str, float] = field(default_factory=dict)
    key_rpm: float | None = None
    model_rpm: dict[str, float] = field(default_factory=dict)
    rate_limit_style: str = "S10"
    rate_limit_burst_s: float | None = None
    rate_limit_window_s: float = 60.0  # the sliding window rpm is counted over
    ratelimit_headers: bool = False
    stream_chunk_ms: float = 0.0
    stall_s: float = 2.0
    models_shape: str = "oneapi"  # oneapi | newapi | newapi2026 | missing (404, no list)
    balance_usd: float = 100.0  # the key's limit; > 100,000,000 means unlimited
    used_usd: float = 12.5
    billing: str = "dashboard"  # dashboard | token_usage (new-api's /api/usage/token/)
    access_token: str = "batchrun-access-token"  # the system access token of /api/user/self
    unknown_models: UnknownModels = "refuse"
    seed: int = 0

    def offered(self) -> list[str]:
        """The models ``GET /v1/models`` lists."""
        return list(self.models or DEFAULT_MODELS)

    def serves(self, model: str) -> bool:
        """Whether a generation request for ``model`` gets past the distributor."""
        return self.unknown_models == "serve" or model in self.offered()

    def accuracy_of(self, model: str) -> float:
        """How often ``model`` answers arithmetic right."""
        return self.accuracy.get(model, self.default_accuracy)


def parse_latency(spec: str) -> tuple[str | None, float]:
    """``"200"`` as ``(None, 200.0)`` (every model), ``"model-a=350"`` as ``("model-a", 350.0)``.

    Raises ValueError naming what is wrong: not a number, or negative.
    """
    model, sep, value = spec.rpartition("=")
    try:
        milliseconds = float(value)
    except ValueError:
        raise ValueError(
            f"latency {spec!r}: expected MILLISECONDS or MODEL=MILLISECONDS, e.g. 200"
        ) from None
    if milliseconds < 0 or not math.isfinite(milliseconds):
        raise ValueError(f"latency {spec!r}: must be a finite number of milliseconds >= 0")
    if sep and not model.strip():
        raise ValueError(f"latency {spec!r}: the model before '=' is empty")
    return (model.strip() if sep else None), milliseconds
