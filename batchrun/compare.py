"""Comparing models on the same prompts, and runs of the same job over time.

``compare`` promises, for the latest run given: per-model figures (requests,
ok rate, errors, latency percentiles, tokens, cost, the judge's requests and
cost, each score's mean with its 95% interval), pairwise wins/ties/losses
with a paired test on the prompts both models answered; and, when several
runs are given (oldest first, as cron writes them), what changed from each
run to the next, with its unit, and regressions flagged.

The prompt is the unit of every statistic: the samples of one prompt are
folded into one value first (their mean; for a pass/fail score the majority,
and a tie stays 0.5) so ``samples: 3`` does not pass for three times the
prompts. Rows that do not count (superseded, repeated) are gone before this
module sees them: see ``snapshots``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import combinations, pairwise
from pathlib import Path
from typing import Any

import polars as pl

from batchrun.dataset import PROMPT_ID
from batchrun.snapshots import JUDGE_COST, JUDGE_REQUESTS, Snapshot, load_snapshots
from batchrun.stats import is_binary, mean_interval, paired_test, quantile

__all__ = [
    "Comparison",
    "ScoreKind",
    "Snapshot",
    "compare",
    "compare_files",
    "load_snapshots",
    "score_names",
    "side_by_side",
]

# A run is flagged when a score falls significantly, the ok rate falls by more than
# this many points, or the median latency or the cost grows by more than this share.
OK_RATE_DROP = 5.0
GROWTH_FLAG = 0.25
PASS_FAIL, JUDGE, NUMERIC = "pass/fail", "judge", "numeric"
JUDGE_SCALE = (1.0, 10.0)


@dataclass(frozen=True)
class ScoreKind:
    """What a score is (pass/fail, judge, numeric) and the range its colours span."""

    kind: str
    low: float
    high: float
    lower_better: bool = False  # an error rate (WER): the lower the better


@dataclass
class Comparison:
    """Everything ``compare`` and ``report`` show."""

    latest: Snapshot
    scores: list[str]
    kinds: dict[str, ScoreKind]
    models: list[dict[str, Any]]
    pairwise: list[dict[str, Any]]
    prompts: int
    samples: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    changed: pl.DataFrame = field(default_factory=pl.DataFrame)
    history: list[dict[str, Any]] = field(default_factory=list)
    dates: dict[str, datetime | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def score_names(frame: pl.DataFrame) -> list[str]:
    """The scores present in a results frame (without the ``score_`` prefix)."""
    return [
        c.removeprefix("score_")
        for c in frame.columns
        if c.startswith("score_") and not c.endswith("_reason")
    ]


def score_kind(frame: pl.DataFrame, name: str) -> ScoreKind:
    """Pass/fail (0..1), judge (1..10, or wider if its values are), or numeric (min..max)."""
    values = frame.get_column(f"score_{name}").drop_nulls().cast(pl.Float64).to_list()
    if is_binary(values):
        return ScoreKind(PASS_FAIL, 0.0, 1.0)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if f"score_{name}_reason" in frame.columns:
        return ScoreKind(JUDGE, min(low, JUDGE_SCALE[0]), max(high, JUDGE_SCALE[1]))
    return ScoreKind(NUMERIC, low, high if high > low else low + 1.0)


def compare(snapshots: list[Snapshot], warnings: list[str] | None = None) -> Comparison:
    """Compare the models of the latest snapshot, and each snapshot with the one before."""
    latest = snapshots[-1]
    frame = latest.frame
    scores = score_names(frame)
    kinds = {
        name: replace(score_kind(frame, name), lower_better=name in latest.lower_is_better)
        for name in scores
    }
    comparison = Comparison(
        latest=latest,
        scores=scores,
        kinds=kinds,
        models=model_rows(frame, scores, kinds),
        pairwise=pairwise_rows(frame, scores, kinds),
        prompts=frame.get_column(PROMPT_ID).n_unique(),
        samples=frame.get_column("sample").n_unique(),
        dates={snap.label: snap.finished for snap in snapshots},
        warnings=list(warnings or []),
    )
    if len(snapshots) > 1:
        comparison.runs, comparison.changed = run_over_run(snapshots, scores, kinds)
        comparison.history = [
            {"run": snap.label, **row}
            for snap in snapshots
            for row in model_rows(
                snap.frame, [s for s in scores if f"score_{s}" in snap.frame.columns], kinds
            )
        ]
    return comparison


def compare_files(
    paths: list[Path], allow_different: bool = False, warn: Callable[[str], None] | None = None
) -> Comparison:
    """Read ``paths`` (oldest first) and compare them; each warning also goes to ``warn``."""
    snapshots, warnings = load_snapshots(paths, allow_different=allow_different)
    for line in warnings:
        if warn is not None:
            warn(line)
    return compare(snapshots, warnings)


def per_prompt(frame: pl.DataFrame, model: str, name: str, kind: ScoreKind) -> pl.DataFrame:
    """One value per prompt of ``model`` for score ``name``: the samples' mean, or for a
    pass/fail score their majority (1 or 0; 0.5 on a tie)."""
    column = f"score_{name}"
    rows = frame.filter((pl.col("model") == model) & pl.col(column).is_not_null())
    mean = pl.col(column).cast(pl.Float64).mean()
    if kind.kind == PASS_FAIL:
        mean = pl.when(mean > 0.5).then(1.0).when(mean < 0.5).then(0.0).otherwise(0.5)
    return rows.group_by(PROMPT_ID).agg(mean.alias("value")).sort(PROMPT_ID)


def model_rows(
    frame: pl.DataFrame, scores: list[str], kinds: dict[str, ScoreKind]
) -> list[dict[str, Any]]:
    """Per-model figures of one results frame."""
    rows = []
    for model in sorted(frame.get_column("model").unique().to_list()):
        part = frame.filter(pl.col("model") == model)
        row = _model_row(model, part)
        for name in scores:
            values = per_prompt(frame, model, name, kinds[name]).get_column("value").to_list()
            row[f"score_{name}"] = mean_interval(values)
        rows.append(row)
    return rows


def _sum(part: pl.DataFrame, column: str) -> float | None:
    """The column's sum, or None when the column is missing or every value is null."""
    if column not in part.columns or part.get_column(column).null_count() == part.height:
        return None
    return float(part.get_column(column).sum())


def _model_row(model: str, part: pl.DataFrame) -> dict[str, Any]:
    """Counts, latency, tokens and cost of one model's rows."""
    ok = part.filter(pl.col("status") == "ok")
    kind = "error_type" if "error_type" in part.columns else "status"
    errors = (
        part.filter(pl.col("status") != "ok")
        .group_by(kind)
        .len()
        .sort(["len", kind], descending=[True, False])
    )
    prompts = part.get_column(PROMPT_ID).n_unique()
    cost = _sum(part, "cost_usd")
    completion = ok.get_column("completion_tokens").drop_nulls()
    latency = ok.get_column("latency_s").to_list()
    ttft = ok.get_column("ttft_s").to_list() if "ttft_s" in ok.columns else []
    return {
        "model": model,
        "prompts": prompts,
        "samples": part.get_column("sample").n_unique(),
        "requests": part.height,
        "ok": ok.height,
        "ok_rate": 100.0 * ok.height / part.height if part.height else None,
        "errors": {str(kind or "unknown"): n for kind, n in errors.iter_rows()},
        "latency_p50_s": quantile(latency, 0.5),
        "latency_p95_s": quantile(latency, 0.95),
        "latency_p99_s": quantile(latency, 0.99),
        "ttft_p50_s": quantile(ttft, 0.5),
        "completion_tokens_mean": float(completion.mean()) if completion.len() else None,  # type: ignore[arg-type]
        "completion_tokens_n": completion.len(),
        "tokens_total": int(part.get_column("total_tokens").sum()),
        "cost_usd": cost,
        "cost_per_1k_prompts": cost / prompts * 1000 if cost is not None and prompts else None,
        "judge_requests": int(part.get_column(JUDGE_REQUESTS).sum())
        if JUDGE_REQUESTS in part.columns
        else None,
        "judge_cost_usd": _sum(part, JUDGE_COST),
    }


def _paired(
    old: pl.DataFrame, new: pl.DataFrame, models: tuple[str, str], name: str, kind: ScoreKind
) -> tuple[list[float], list[float]]:
    """Per-prompt values of ``models[0]`` in ``old`` and ``models[1]`` in ``new``, on the
    prompts both have."""
    left = per_prompt(old, models[0], name, kind).rename({"value": "a"})
    right = per_prompt(new, models[1], name, kind).rename({"value": "b"})
    joined = left.join(right, on=PROMPT_ID, how="inner")
    return joined.get_column("a").to_list(), joined.get_column("b").to_list()


def _oriented(a: list[float], b: list[float], kind: ScoreKind) -> tuple[list[float], list[float]]:
    """The values as the paired test reads them: higher is better (an error rate negated)."""
    if kind.lower_better:
        return [-v for v in a], [-v for v in b]
    return a, b


def pairwise_rows(
    frame: pl.DataFrame, scores: list[str], kinds: dict[str, ScoreKind]
) -> list[dict[str, Any]]:
    """For each score and pair of models: wins, ties, losses and the paired test, per prompt."""
    models = sorted(frame.get_column("model").unique().to_list())
    samples = frame.get_column("sample").n_unique()
    rows = []
    for name in scores:
        for a, b in combinations(models, 2):
            left, right = _paired(frame, frame, (a, b), name, kinds[name])
            if not left:
                continue
            rows.append(
                {
                    "score": name,
                    "model_a": a,
                    "model_b": b,
                    "prompts": len(left),
                    "samples": samples,
                    "mean_a": sum(left) / len(left),
                    "mean_b": sum(right) / len(right),
                    "test": paired_test(*_oriented(left, right, kinds[name])),
                }
            )
    return rows


def run_over_run(
    snapshots: list[Snapshot], scores: list[str], kinds: dict[str, ScoreKind]
) -> tuple[list[dict[str, Any]], pl.DataFrame]:
    """Each run against the one before: per model changes with their unit, flags, and the
    rows that changed."""
    rows: list[dict[str, Any]] = []
    changed_frames = []
    for before, after in pairwise(snapshots):
        present = [s for s in scores if f"score_{s}" in before.frame.columns]
        old = {r["model"]: r for r in model_rows(before.frame, [], kinds)}
        new = {r["model"]: r for r in model_rows(after.frame, [], kinds)}
        for model in sorted(set(old) & set(new)):
            row = {"from": before.label, "to": after.label, "model": model}
            row.update(_changes(old[model], new[model]))
            flags = _flags(row)
            for name in present:
                left, right = _paired(before.frame, after.frame, (model, model), name, kinds[name])
                test = paired_test(*_oriented(right, left, kinds[name])) if left else None
                delta = (sum(right) / len(right) - sum(left) / len(left)) if left else None
                row[f"score_{name}_change"] = delta
                row[f"score_{name}_p"] = test.p_value if test else None
                row[f"score_{name}_untested"] = test.untested if test else None
                if delta is not None and delta < 0 and test is not None and test.significant:
                    flags.append(f"{name} regressed")
            row["flags"] = flags
            rows.append(row)
        changed_frames.append(_changed(before, after, scores))
    changed = (
        pl.concat(changed_frames, how="diagonal_relaxed") if changed_frames else pl.DataFrame()
    )
    return rows, changed


def _difference(old: float | None, new: float | None) -> float | None:
    return None if old is None or new is None else new - old


def _relative(old: float | None, new: float | None) -> float | None:
    if old is None or new is None or old == 0:
        return None
    return (new - old) / old


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Ok rate in points, median latency in seconds and share, cost in dollars and share."""
    return {
        "ok_rate_change_pts": _difference(old["ok_rate"], new["ok_rate"]),
        "latency_p50_change_s": _difference(old["latency_p50_s"], new["latency_p50_s"]),
        "latency_p50_change_pct": _percent(_relative(old["latency_p50_s"], new["latency_p50_s"])),
        "cost_change_usd": _difference(old["cost_usd"], new["cost_usd"]),
        "cost_change_pct": _percent(_relative(old["cost_usd"], new["cost_usd"])),
    }


def _percent(share: float | None) -> float | None:
    return None if share is None else 100.0 * share


def _flags(row: dict[str, Any]) -> list[str]:
    flags = []
    if (row["ok_rate_change_pts"] or 0.0) < -OK_RATE_DROP:
        flags.append("ok rate down")
    if (row["latency_p50_change_pct"] or 0.0) > 100 * GROWTH_FLAG:
        flags.append("slower")
    if (row["cost_change_pct"] or 0.0) > 100 * GROWTH_FLAG:
        flags.append("costlier")
    return flags


def _changed(before: Snapshot, after: Snapshot, scores: list[str]) -> pl.DataFrame:
    """Rows (prompt, model, sample) whose status or any score differs between two runs."""
    keys = [PROMPT_ID, "model", "sample"]
    wanted = ["status", "response", *[f"score_{n}" for n in scores]]

    def pick(frame: pl.DataFrame, suffix: str) -> pl.DataFrame:
        columns = [c for c in wanted if c in frame.columns]
        return frame.select(*keys, *[pl.col(c).alias(f"{c}_{suffix}") for c in columns])

    joined = pick(before.frame, "before").join(pick(after.frame, "after"), on=keys, how="inner")
    differs = pl.col("status_before") != pl.col("status_after")
    for name in scores:
        b, a = f"score_{name}_before", f"score_{name}_after"
        if b in joined.columns and a in joined.columns:
            differs = differs | pl.col(b).ne_missing(pl.col(a))
    return joined.filter(differs).with_columns(
        pl.lit(before.label).alias("from"), pl.lit(after.label).alias("to")
    )


def side_by_side(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per prompt (and sample), one column per model's response and scores."""
    values = ["response", *[f"score_{n}" for n in score_names(frame)], "status"]
    carried = [c for c in ("prompt",) if c in frame.columns]
    wide = frame.pivot(on="model", index=[PROMPT_ID, "sample", *carried], values=values)
    return wide.sort([PROMPT_ID, "sample"])
