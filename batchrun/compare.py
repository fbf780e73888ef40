"""Comparing models on the same prompts, and runs of the same job over time.

``compare`` promises, for the latest results file given: per-model figures
(ok rate, errors, latency percentiles, tokens, cost, each score's mean with
its 95% interval), pairwise wins/ties/losses with a paired significance test
on the prompts both models answered, and a side-by-side table; and, when
several files are given (oldest first, as cron writes them), what changed
from each run to the next, with regressions flagged.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from itertools import combinations, pairwise
from pathlib import Path
from typing import Any

import polars as pl

from batchrun.dataset import PROMPT_ID
from batchrun.errors import JobError
from batchrun.stats import Interval, PairedTest, mean_interval, paired_test
from batchrun.summary import format_table

PAIR_KEY = (PROMPT_ID, "sample")
# A run is flagged when a score falls significantly, the ok rate falls by more than
# this many points, or the median latency or the cost grows by more than this share.
OK_RATE_DROP = 5.0
GROWTH_FLAG = 0.25


@dataclass
class Snapshot:
    """One results file: a run of a job."""

    label: str
    frame: pl.DataFrame


@dataclass
class Comparison:
    """Everything ``compare`` and ``report`` show."""

    latest: Snapshot
    scores: list[str]
    models: list[dict[str, Any]]
    pairwise: list[dict[str, Any]]
    runs: list[dict[str, Any]] = field(default_factory=list)
    changed: pl.DataFrame = field(default_factory=pl.DataFrame)
    history: list[dict[str, Any]] = field(default_factory=list)


def load_snapshots(paths: list[Path]) -> list[Snapshot]:
    """Read each results file; ``JobError`` for a missing or foreign file."""
    snapshots = []
    for path in paths:
        try:
            frame = pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise JobError(f"{path}: cannot read results ({str(exc).splitlines()[0]})") from None
        missing = {"model", "status", PROMPT_ID, "sample"} - set(frame.columns)
        if missing:
            raise JobError(f"{path}: not a batchrun results file (no {sorted(missing)[0]} column)")
        snapshots.append(Snapshot(path.stem, frame))
    return snapshots


def score_names(frame: pl.DataFrame) -> list[str]:
    """The scores present in a results frame (without the ``score_`` prefix)."""
    return [
        c.removeprefix("score_")
        for c in frame.columns
        if c.startswith("score_") and not c.endswith("_reason")
    ]


def compare(snapshots: list[Snapshot]) -> Comparison:
    """Compare the models of the latest snapshot, and each snapshot with the one before."""
    latest = snapshots[-1]
    scores = score_names(latest.frame)
    comparison = Comparison(
        latest=latest,
        scores=scores,
        models=model_rows(latest.frame, scores),
        pairwise=pairwise_rows(latest.frame, scores),
    )
    if len(snapshots) > 1:
        comparison.runs, comparison.changed = run_over_run(snapshots, scores)
        comparison.history = [
            {"run": snap.label, **row}
            for snap in snapshots
            for row in model_rows(snap.frame, score_names(snap.frame))
        ]
    return comparison


def model_rows(frame: pl.DataFrame, scores: list[str]) -> list[dict[str, Any]]:
    """Per-model figures of one results frame."""
    rows = []
    prompts = max(frame.get_column(PROMPT_ID).n_unique(), 1)
    for model in sorted(frame.get_column("model").unique().to_list()):
        part = frame.filter(pl.col("model") == model)
        ok = part.filter(pl.col("status") == "ok")
        errors = (
            part.filter(pl.col("status") != "ok")
            .group_by("error_type")
            .len()
            .sort("len", descending=True)
        )
        latency = ok.get_column("latency_s")
        cost = part.get_column("cost_usd") if "cost_usd" in part.columns else None
        priced = cost is not None and cost.null_count() < part.height
        row: dict[str, Any] = {
            "model": model,
            "requests": part.height,
            "ok_rate": 100.0 * ok.height / part.height if part.height else math.nan,
            "errors": ", ".join(f"{t or 'unknown'} x{n}" for t, n in errors.iter_rows()) or "-",
            "latency_p50_s": _quantile(latency, 0.5),
            "latency_p95_s": _quantile(latency, 0.95),
            "latency_p99_s": _quantile(latency, 0.99),
            "ttft_p50_s": _quantile(ok.get_column("ttft_s"), 0.5)
            if "ttft_s" in ok.columns
            else None,
            "completion_tokens_mean": ok.get_column("completion_tokens").mean(),
            "tokens_total": part.get_column("total_tokens").sum(),
            "cost_usd": cost.sum() if priced and cost is not None else None,
            "cost_per_1k_prompts": (
                cost.sum() / prompts * 1000 if priced and cost is not None else None
            ),
        }
        for name in scores:
            values = part.get_column(f"score_{name}").drop_nulls().to_list()
            interval = mean_interval(values)
            row[f"score_{name}"] = interval
        rows.append(row)
    return rows


def _quantile(series: pl.Series, q: float) -> float | None:
    values = series.drop_nulls()
    if values.len() == 0:
        return None
    result = values.quantile(q, "linear")
    return float(result) if result is not None else None


def _paired(frame: pl.DataFrame, a: str, b: str, column: str) -> tuple[list[float], list[float]]:
    """Scores of models ``a`` and ``b`` on the prompts (and samples) both answered."""

    def side(model: str, alias: str) -> pl.DataFrame:
        return frame.filter((pl.col("model") == model) & pl.col(column).is_not_null()).select(
            *PAIR_KEY, pl.col(column).alias(alias)
        )

    joined = side(a, "a").join(side(b, "b"), on=list(PAIR_KEY), how="inner")
    return joined.get_column("a").to_list(), joined.get_column("b").to_list()


def pairwise_rows(frame: pl.DataFrame, scores: list[str]) -> list[dict[str, Any]]:
    """For each score and pair of models: wins, ties, losses and the paired test."""
    models = sorted(frame.get_column("model").unique().to_list())
    rows = []
    for name in scores:
        for a, b in combinations(models, 2):
            left, right = _paired(frame, a, b, f"score_{name}")
            if not left:
                continue
            test = paired_test(left, right)
            rows.append(
                {
                    "score": name,
                    "model_a": a,
                    "model_b": b,
                    "n": len(left),
                    "mean_a": sum(left) / len(left),
                    "mean_b": sum(right) / len(right),
                    "test": test,
                }
            )
    return rows


def run_over_run(
    snapshots: list[Snapshot], scores: list[str]
) -> tuple[list[dict[str, Any]], pl.DataFrame]:
    """Each run against the one before: per model deltas, flags, and the rows that changed."""
    rows: list[dict[str, Any]] = []
    changed_frames = []
    for before, after in pairwise(snapshots):
        old = {r["model"]: r for r in model_rows(before.frame, scores)}
        new = {r["model"]: r for r in model_rows(after.frame, scores)}
        for model in sorted(set(old) & set(new)):
            row: dict[str, Any] = {"from": before.label, "to": after.label, "model": model}
            flags = []
            row["ok_rate_change"] = new[model]["ok_rate"] - old[model]["ok_rate"]
            if row["ok_rate_change"] < -OK_RATE_DROP:
                flags.append("ok rate down")
            row["latency_p50_change"] = _relative(
                old[model]["latency_p50_s"], new[model]["latency_p50_s"]
            )
            if (row["latency_p50_change"] or 0) > GROWTH_FLAG:
                flags.append("slower")
            row["cost_change"] = _relative(old[model]["cost_usd"], new[model]["cost_usd"])
            if (row["cost_change"] or 0) > GROWTH_FLAG:
                flags.append("costlier")
            for name in scores:
                column = f"score_{name}"
                if column not in before.frame.columns:
                    continue
                left, right = _runs_paired(before.frame, after.frame, model, column)
                delta = (sum(right) / len(right) - sum(left) / len(left)) if left else None
                test = paired_test(right, left) if left else None
                row[f"{column}_change"] = delta
                row[f"{column}_p"] = test.p_value if test else None
                if delta is not None and delta < 0 and test is not None and test.significant:
                    flags.append(f"{name} regressed")
            row["flags"] = ", ".join(flags) or "-"
            rows.append(row)
        changed_frames.append(_changed(before, after, scores))
    changed = (
        pl.concat(changed_frames, how="diagonal_relaxed") if changed_frames else pl.DataFrame()
    )
    return rows, changed


def _relative(old: float | None, new: float | None) -> float | None:
    if old is None or new is None or old == 0:
        return None
    return (new - old) / old


def _runs_paired(
    before: pl.DataFrame, after: pl.DataFrame, model: str, column: str
) -> tuple[list[float], list[float]]:
    def side(frame: pl.DataFrame, alias: str) -> pl.DataFrame:
        return frame.filter((pl.col("model") == model) & pl.col(column).is_not_null()).select(
            *PAIR_KEY, pl.col(column).alias(alias)
        )

    joined = side(before, "old").join(side(after, "new"), on=list(PAIR_KEY), how="inner")
    return joined.get_column("old").to_list(), joined.get_column("new").to_list()


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
    wide = frame.pivot(on="model", index=[*PAIR_KEY, *carried], values=values)
    return wide.sort(list(PAIR_KEY))


def _cell(value: Any) -> Any:
    if isinstance(value, Interval):
        if math.isnan(value.mean):
            return "-"
        if math.isnan(value.low):
            return f"{value.mean:.3f}"
        return f"{value.mean:.3f} [{value.low:.3f}, {value.high:.3f}]"
    if isinstance(value, PairedTest):
        mark = " *" if value.significant else ""
        return (
            f"{value.wins}/{value.ties}/{value.losses} p={value.p_value:.3g} ({value.test}){mark}"
        )
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return value


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _cell(v) for k, v in row.items()} for row in rows]


def _json_value(value: Any) -> Any:
    if isinstance(value, Interval):
        return {
            "mean": _num(value.mean),
            "low": _num(value.low),
            "high": _num(value.high),
            "n": value.n,
        }
    if isinstance(value, PairedTest):
        return {
            "wins": value.wins,
            "ties": value.ties,
            "losses": value.losses,
            "p_value": value.p_value,
            "test": value.test,
            "significant": value.significant,
        }
    return _num(value) if isinstance(value, float) else value


def _num(value: float) -> float | None:
    return None if math.isnan(value) else value


MODEL_COLUMNS = [
    ("model", "model"), ("requests", "requests"), ("ok_rate", "ok %"), ("errors", "errors"),
    ("latency_p50_s", "p50 s"), ("latency_p95_s", "p95 s"), ("latency_p99_s", "p99 s"),
    ("ttft_p50_s", "ttft p50"), ("completion_tokens_mean", "out tok mean"),
    ("tokens_total", "tokens"), ("cost_usd", "cost $"), ("cost_per_1k_prompts", "$/1k prompts"),
]  # fmt: skip
PAIR_COLUMNS = [
    ("score", "score"), ("model_a", "A"), ("model_b", "B"), ("n", "n"), ("mean_a", "mean A"),
    ("mean_b", "mean B"), ("test", "A win/tie/loss, p (test), * = significant"),
]  # fmt: skip


def _sections(
    comparison: Comparison,
) -> list[tuple[str, list[tuple[str, str]], list[dict[str, Any]]]]:
    score_columns = [(f"score_{n}", f"{n} (95% CI)") for n in comparison.scores]
    sections = [
        (f"Models ({comparison.latest.label})", MODEL_COLUMNS + score_columns, comparison.models),
        ("Pairwise, on prompts both answered", PAIR_COLUMNS, comparison.pairwise),
    ]
    if comparison.runs:
        run_columns = [
            ("from", "from"),
            ("to", "to"),
            ("model", "model"),
            ("ok_rate_change", "ok % change"),
            ("latency_p50_change", "p50 change"),
            ("cost_change", "cost change"),
        ]
        for name in comparison.scores:
            run_columns += [(f"score_{name}_change", f"{name} change"), (f"score_{name}_p", "p")]
        run_columns.append(("flags", "flags"))
        sections.append(("Run over run", run_columns, comparison.runs))
    return sections


def render(comparison: Comparison, fmt: str) -> str:
    """The comparison as ``table`` (terminal), ``markdown``, ``csv`` or ``json``."""
    sections = _sections(comparison)
    if fmt == "json":
        document: dict[str, Any] = {
            "latest": comparison.latest.label,
            "scores": comparison.scores,
            "models": [{k: _json_value(v) for k, v in r.items()} for r in comparison.models],
            "pairwise": [{k: _json_value(v) for k, v in r.items()} for r in comparison.pairwise],
            "runs": [{k: _json_value(v) for k, v in r.items()} for r in comparison.runs],
            "changed": comparison.changed.to_dicts() if comparison.changed.height else [],
        }
        return json.dumps(document, indent=2, default=str)
    out: list[str] = []
    for title, columns, rows in sections:
        plain = _plain(rows)
        if fmt == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow([f"# {title}"])
            writer.writerow([heading for _, heading in columns])
            for row in plain:
                writer.writerow([row.get(key, "") for key, _ in columns])
            out.append(buffer.getvalue().rstrip("\n"))
        elif fmt == "markdown":
            out.append(f"### {title}\n")
            out.append("| " + " | ".join(h for _, h in columns) + " |")
            out.append("|" + "---|" * len(columns))
            for row in plain:
                out.append("| " + " | ".join(str(_fmt(row.get(k))) for k, _ in columns) + " |")
            out.append("")
        else:
            out.append(title)
            out.append(format_table(plain, columns) if plain else "(nothing to compare)")
            out.append("")
    if comparison.changed.height and fmt in ("table", "markdown"):
        out.append(
            f"{comparison.changed.height} rows changed from run to run "
            "(see --format json for the list)"
        )
    return "\n".join(out).rstrip() + "\n"


def _fmt(value: Any) -> Any:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return value
