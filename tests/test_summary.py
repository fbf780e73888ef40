"""The end-of-run tally: figures per model from the results as they arrive."""

from __future__ import annotations

import pytest

from batchrun.store import Result
from batchrun.summary import RunTally, quantile


def row(model: str, status: str, latency: float, cost: float | None) -> Result:
    return Result(
        prompt_id="p",
        model=model,
        model_id=model,
        sample=0,
        request_key="k",
        status=status,
        attempts=1,
        started_at=0.0,
        finished_at=0.0,
        prompt_tokens=10 if status == "ok" else None,
        completion_tokens=5 if status == "ok" else None,
        latency_s=latency if status == "ok" else None,
        cost_usd=cost,
    )


def test_quantile_interpolates() -> None:
    """[1, 2, 3, 4]: p50 = 2.5 and p95 = 3.85, linear between neighbours."""
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    assert quantile([], 0.5) is None


def test_tally_per_model() -> None:
    """Counts, tokens and latency of ok rows; cost null when nothing was priced."""
    tally = RunTally()
    for result in (
        row("a", "ok", 1.0, 0.5),
        row("a", "ok", 3.0, 0.25),
        row("a", "error", 0, None),
        row("b", "ok", 2.0, None),
    ):
        tally.add(result)
    a, b = tally.rows()
    assert (a["model"], a["requests"], a["ok"], a["failed"]) == ("a", 3, 2, 1)
    assert (a["prompt_tokens"], a["completion_tokens"], a["latency_p50_s"]) == (20, 10, 2.0)
    assert a["cost_usd"] == 0.75 and a["unpriced"] == 1
    assert b["cost_usd"] is None
    assert tally.by_status == {"ok": 3, "error": 1}
