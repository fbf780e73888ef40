"""The end-of-run summary: per model, what was asked, answered and spent.

``summarize`` promises one row per model of the results given (ok and
failed counts, tokens, latency percentiles, cost), and ``format_table``
renders rows as an aligned plain-text table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl


def summarize(results: pl.DataFrame | pl.LazyFrame) -> list[dict[str, Any]]:
    """Per-model figures from results (read lazily, only what is needed), by model name."""
    ok = pl.col("status") == "ok"
    grouped = (
        results.lazy()
        .group_by("model")
        .agg(
            pl.len().alias("requests"),
            ok.sum().alias("ok"),
            (~ok).sum().alias("failed"),
            pl.col("prompt_tokens").filter(ok).sum().alias("prompt_tokens"),
            pl.col("completion_tokens").filter(ok).sum().alias("completion_tokens"),
            pl.col("latency_s").filter(ok).quantile(0.5, "linear").alias("latency_p50_s"),
            pl.col("latency_s").filter(ok).quantile(0.95, "linear").alias("latency_p95_s"),
            pl.col("cost_usd").sum().alias("cost_usd"),
            pl.col("cost_usd").null_count().alias("unpriced"),
        )
        .sort("model")
    )
    return grouped.collect().to_dicts()


def count_statuses(results: pl.DataFrame | pl.LazyFrame) -> dict[str, int]:
    """How many rows have each status."""
    counted = results.lazy().group_by("status").len().collect()
    return {str(status): int(n) for status, n in counted.iter_rows()}


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
