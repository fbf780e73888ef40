"""The end-of-run summary: per model, what was asked, answered and spent.

``RunTally`` counts results as they arrive and promises one row per model
(ok and failed counts, tokens, latency percentiles, cost) without reading
the output again; ``format_table`` renders rows as an aligned text table.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from batchrun.stats import quantile as quantile  # the exact one, for lists
from batchrun.stats import sorted_quantile
from batchrun.store import Result


class ModelTally:
    """Running figures of one model: counts, tokens, cost, and every ok latency."""

    def __init__(self) -> None:
        self.requests = 0
        self.ok = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self.unpriced = 0
        self.latencies = array("d")
        self.first_started = float("inf")
        self.last_finished = float("-inf")

    def add(self, result: Result) -> None:
        """Count one result."""
        self.requests += 1
        self.first_started = min(self.first_started, result.started_at)
        self.last_finished = max(self.last_finished, result.finished_at)
        if result.cost_usd is None:
            self.unpriced += 1
        else:
            self.cost_usd += result.cost_usd
        if result.status != "ok":
            return
        self.ok += 1
        self.prompt_tokens += result.prompt_tokens or 0
        self.completion_tokens += result.completion_tokens or 0
        if result.latency_s is not None:
            self.latencies.append(result.latency_s)

    def rate_per_s(self) -> float | None:
        """Requests a second over this model's own busy time (first start to last finish)."""
        busy = self.last_finished - self.first_started
        if self.requests == 0 or busy <= 0:
            return None
        return self.requests / busy


@dataclass
class ErrorTally:
    """Failures of one type in a run: how many, and the first one's model and message."""

    count: int
    model: str
    example: str


class RunTally:
    """Per-model figures of a run, kept as results arrive (no re-reading of the output)."""

    def __init__(self) -> None:
        self.models: dict[str, ModelTally] = {}
        self.by_status: dict[str, int] = {}
        self.errors: dict[str, ErrorTally] = {}

    def add(self, result: Result) -> None:
        """Count one result."""
        tally = self.models.get(result.model)
        if tally is None:
            tally = self.models[result.model] = ModelTally()
        tally.add(result)
        self.by_status[result.status] = self.by_status.get(result.status, 0) + 1
        if result.status != "ok":
            kind = result.error_type or "error"
            found = self.errors.get(kind)
            if found is None:
                self.errors[kind] = ErrorTally(1, result.model, result.error_message or "")
            else:
                found.count += 1

    def forget_latencies(self) -> None:
        """Let go of every latency (8 bytes an ok answer) once ``rows`` has read them."""
        for tally in self.models.values():
            tally.latencies = array("d")

    def rows(self) -> list[dict[str, Any]]:
        """One row per model, by name: counts, tokens, latency p50/p95, cost, own req/s."""
        rows = []
        for model in sorted(self.models):
            tally = self.models[model]
            p50, p95 = _quantiles(tally.latencies, (0.5, 0.95))
            rows.append(
                {
                    "model": model,
                    "requests": tally.requests,
                    "ok": tally.ok,
                    "failed": tally.requests - tally.ok,
                    "prompt_tokens": tally.prompt_tokens,
                    "completion_tokens": tally.completion_tokens,
                    "latency_p50_s": p50,
                    "latency_p95_s": p95,
                    "cost_usd": tally.cost_usd if tally.unpriced < tally.requests else None,
                    "rate_per_s": tally.rate_per_s(),
                    "unpriced": tally.unpriced,
                }
            )
        return rows


def _quantiles(values: array[float], qs: Sequence[float]) -> list[float | None]:
    """Each ``q`` quantile, interpolated linearly as ``stats.quantile`` does; None if empty.

    One sorted copy in Polars, read at two places per quantile: no Python float
    per request, and one copy of a million latencies rather than one per quantile.
    """
    ordered = pl.Series("latency", values, dtype=pl.Float64)
    if ordered.is_nan().any():
        ordered = ordered.filter(~ordered.is_nan())
    ordered = ordered.sort()
    return [sorted_quantile(ordered, q) for q in qs]


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as an aligned text table; ``columns`` pairs a row key with its heading."""
    header = [title for _, title in columns]
    body = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(columns))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *body]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
