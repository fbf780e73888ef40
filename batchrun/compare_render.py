"""``compare``'s output: text for people (table, markdown), data for programs (json, csv).

``render`` promises: human formats show every figure through ``display``
(three significant digits, thousands separators, units on changes) and say
what a statistic is counted over (``n prompts``, ``k samples each``); ``json``
is one document with every table, numbers as numbers and null for missing;
``csv`` is one table (``models``, ``pairwise`` or ``runs``) with one value
per cell, numbers as numbers, empty for missing, intervals as low and high
columns. The columns are listed in README.md ("compare for programs").
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any

from batchrun import display
from batchrun.compare import Comparison
from batchrun.stats import Interval, PairedTest
from batchrun.summary import format_table

TABLES = ("models", "pairwise", "runs")
Column = tuple[str, str, Callable[[Any], str]]


def _text(value: Any) -> str:
    return display.MISSING if value is None else str(value)


def interval_text(value: Interval) -> str:
    """``mean [low, high] n=N`` to three significant digits."""
    if math.isnan(value.mean):
        return display.MISSING
    if math.isnan(value.low):
        return f"{display.sig(value.mean)} n={value.n:,}"
    return (
        f"{display.sig(value.mean)} [{display.sig(value.low)}, {display.sig(value.high)}] "
        f"n={value.n:,}"
    )


def paired_text(test: PairedTest) -> str:
    """``wins/ties/losses p=… (test)`` with `` *`` when significant, or why there is no test."""
    counts = f"{test.wins}/{test.ties}/{test.losses}"
    if test.p_value is None:
        return f"{counts} no test: {test.untested}"
    mark = " *" if test.significant else ""
    return f"{counts} p={test.p_value:.3g} ({test.test}){mark}"


def errors_text(errors: dict[str, int]) -> str:
    """``timeout x3, server_error x1``."""
    return ", ".join(f"{kind} x{n:,}" for kind, n in errors.items()) or display.MISSING


def _with_share(absolute: str, share: float | None) -> str:
    return absolute if share is None else f"{absolute} ({display.change_percent(share / 100)})"


def _model_columns(comparison: Comparison) -> list[Column]:
    columns: list[Column] = [
        ("model", "model", _text),
        ("prompts", "prompts", display.count),
        ("samples", "samples", display.count),
        ("requests", "requests", display.count),
        ("ok_rate", "ok %", display.percent),
        ("errors", "errors", errors_text),
        ("latency_p50_s", "p50", display.seconds),
        ("latency_p95_s", "p95", display.seconds),
        ("latency_p99_s", "p99", display.seconds),
        ("ttft_p50_s", "ttft p50", display.seconds),
        ("completion_tokens_mean", "out tok mean", display.sig),
        ("tokens_total", "tokens", display.count),
        ("cost_usd", "cost", display.money),
        ("cost_per_1k_prompts", "per 1k prompts", display.money),
    ]
    if any(row["judge_requests"] is not None for row in comparison.models):
        columns += [
            ("judge_requests", "judge requests", display.count),
            ("judge_cost_usd", "judge cost", display.money),
        ]
    columns += [(f"score_{n}", f"{n} (95% CI)", interval_text) for n in comparison.scores]
    return columns


PAIR_COLUMNS: list[Column] = [
    ("score", "score", _text),
    ("model_a", "A", _text),
    ("model_b", "B", _text),
    ("prompts", "n prompts", display.count),
    ("mean_a", "mean A", display.sig),
    ("mean_b", "mean B", display.sig),
    ("test", "A win/tie/loss, p (test), * = significant", paired_text),
]


def _run_columns(comparison: Comparison) -> list[Column]:
    columns: list[Column] = [
        ("from", "from", _text),
        ("to", "to", _text),
        ("model", "model", _text),
        ("ok_rate_change_pts", "ok % change", display.change_points),
        ("latency_p50", "p50 change", _text),
        ("cost", "cost change", _text),
    ]
    for name in comparison.scores:
        columns += [
            (f"score_{name}_change", f"{name} change", display.change_number),
            (f"score_{name}_p", "p", lambda p: display.MISSING if p is None else f"{p:.3g}"),
        ]
    columns.append(("flags", "flags", lambda flags: ", ".join(flags) or display.MISSING))
    return columns


def _run_row(row: dict[str, Any]) -> dict[str, Any]:
    """A run-over-run row with its changes joined to their shares (+0.05 s (+164%))."""
    return {
        **row,
        "latency_p50": _with_share(
            display.change_seconds(row["latency_p50_change_s"]), row["latency_p50_change_pct"]
        ),
        "cost": _with_share(display.change_money(row["cost_change_usd"]), row["cost_change_pct"]),
    }


def unit_line(comparison: Comparison) -> str:
    """What every statistic is counted over."""
    each = "sample" if comparison.samples == 1 else "samples"
    folded = (
        "; scores are per-prompt means of the samples (pass/fail: their majority)"
        if comparison.samples > 1
        else ""
    )
    return f"n = {comparison.prompts:,} prompts, {comparison.samples} {each} each{folded}"


def _sections(comparison: Comparison) -> list[tuple[str, list[Column], list[dict[str, Any]]]]:
    sections = [
        (f"Models ({comparison.latest.label})", _model_columns(comparison), comparison.models),
        ("Pairwise, on prompts both answered", PAIR_COLUMNS, comparison.pairwise),
    ]
    if comparison.runs:
        runs = [_run_row(r) for r in comparison.runs]
        sections.append(("Run over run", _run_columns(comparison), runs))
    return sections


def _human(comparison: Comparison, markdown: bool) -> str:
    out: list[str] = []
    for index, (title, columns, rows) in enumerate(_sections(comparison)):
        cells = [{key: show(row.get(key)) for key, _, show in columns} for row in rows]
        if markdown:
            out.append(f"### {title}\n")
            if index == 0:
                out.append(f"{unit_line(comparison)}\n")
            out.append("| " + " | ".join(h for _, h, _ in columns) + " |")
            out.append("|" + "---|" * len(columns))
            out += ["| " + " | ".join(c[k] for k, _, _ in columns) + " |" for c in cells]
        else:
            out.append(title if index else f"{title}: {unit_line(comparison)}")
            headings = [(key, heading) for key, heading, _ in columns]
            out.append(format_table(cells, headings) if cells else "(nothing to compare)")
        out.append("")
    if comparison.changed.height:
        out.append(
            f"{comparison.changed.height:,} rows changed from run to run "
            "(see --format json for the list)"
        )
    return "\n".join(out).rstrip() + "\n"


def render(comparison: Comparison, fmt: str, table: str = "models") -> str:
    """The comparison as ``table`` (terminal), ``markdown``, ``json``, or ``csv`` (``table``:
    one of ``TABLES``)."""
    if fmt == "json":
        return json.dumps(_jsonable(document(comparison)), indent=2, default=str) + "\n"
    if fmt == "csv":
        return csv_table(comparison, table)
    return _human(comparison, markdown=fmt == "markdown")


def document(comparison: Comparison) -> dict[str, Any]:
    """Every table as plain data (intervals and tests as objects)."""
    return {
        "latest": comparison.latest.label,
        "prompts": comparison.prompts,
        "samples": comparison.samples,
        "scores": comparison.scores,
        "score_kinds": {
            name: {"kind": k.kind, "low": k.low, "high": k.high}
            for name, k in comparison.kinds.items()
        },
        "models": comparison.models,
        "pairwise": comparison.pairwise,
        "runs": comparison.runs,
        "history": comparison.history,
        "run_finished_at": comparison.dates,
        "changed": comparison.changed.to_dicts() if comparison.changed.height else [],
        "warnings": comparison.warnings,
    }


def _jsonable(value: Any) -> Any:
    """Intervals and tests as objects, NaN as null, all the way down."""
    if isinstance(value, Interval):
        return _jsonable({"mean": value.mean, "low": value.low, "high": value.high, "n": value.n})
    if isinstance(value, PairedTest):
        return {
            "wins": value.wins,
            "ties": value.ties,
            "losses": value.losses,
            "p_value": value.p_value,
            "test": value.test,
            "significant": value.significant,
            "untested": value.untested,
        }
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """One value per cell: intervals split into mean/low/high/n, tests into their parts."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Interval):
            for part in ("mean", "low", "high", "n"):
                flat[f"{key}_{part}"] = getattr(value, part)
        elif isinstance(value, PairedTest):
            for part in ("wins", "ties", "losses", "test", "p_value", "significant", "untested"):
                flat[part] = getattr(value, part)
        elif isinstance(value, dict):
            flat[key] = "; ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            flat[key] = "; ".join(value)
        else:
            flat[key] = value
    return flat


def _csv_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def csv_table(comparison: Comparison, table: str) -> str:
    """One table as CSV: a header row, then one row per model, pair or run change."""
    rows = {"models": comparison.models, "pairwise": comparison.pairwise, "runs": comparison.runs}
    flat = [_flat(row) for row in rows[table]]
    columns: list[str] = []
    for row in flat:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in flat:
        writer.writerow([_csv_cell(row.get(key)) for key in columns])
    return buffer.getvalue()
