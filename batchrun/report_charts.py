"""The report's charts, as inline SVG: latency per model, cost against score, trends per run.

Every chart promises readable axes: at least three labelled ticks on each
numeric axis, labels kept inside the drawing, figures through ``display``,
and run dates under each point of a trend chart.
"""

from __future__ import annotations

import html
import math
from datetime import datetime
from typing import Any

import polars as pl

from batchrun import display
from batchrun.compare import Comparison
from batchrun.stats import Interval, quantile


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def swatch(color: str) -> str:
    """A small coloured square for legends and headings."""
    return f'<span class="swatch" style="background:{color}"></span>'


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``low..high``: at least three, about ``count``."""
    if not high > low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    while True:
        first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
        if last - first >= 2:
            return [round(i * step, 12) for i in range(first, last + 1)]
        step /= 2


def tick_labels(ticks: list[float]) -> list[str]:
    """Tick values with the same number of decimals, as few as tell them apart (0.05, 0.10)."""
    decimals = max(len(f"{t:.10f}".rstrip("0").split(".")[1]) for t in ticks)
    return [f"{t:,.{decimals}f}" for t in ticks]


def latency_section(frame: pl.DataFrame, models: list[str], colors: dict[str, str]) -> str:
    """Box plots of latency per model: whiskers p5..p95, box p25..p75, line at the median."""
    stats = []
    for model in models:
        ok = frame.filter((pl.col("model") == model) & (pl.col("status") == "ok"))
        values = ok.get_column("latency_s").to_list()
        marks = [quantile(values, q) for q in (0.05, 0.25, 0.5, 0.75, 0.95)]
        if marks[0] is not None:
            stats.append((model, [m or 0.0 for m in marks]))
    if not stats:
        return "<section><h2>Latency</h2><p class='note'>No successful requests.</p></section>"
    width, row_h, left, right = 560, 34, 130, 80
    ticks = nice_ticks(0.0, max(q[4] for _, q in stats) * 1.05 or 1.0)
    top = ticks[-1]
    height = row_h * len(stats) + 40

    def x(value: float) -> float:
        return left + value / top * (width - left - right)

    shapes = []
    for i, (model, (p5, p25, p50, p75, p95)) in enumerate(stats):
        mid = 10 + i * row_h + row_h / 2 - 4
        color = colors[model]
        shapes.append(
            f'<text x="{left - 8}" y="{mid + 4}" text-anchor="end">{_e(model[:20])}</text>'
            f'<line x1="{x(p5):.1f}" x2="{x(p95):.1f}" y1="{mid}" y2="{mid}" stroke="{color}"/>'
            f'<rect x="{x(p25):.1f}" y="{mid - 9}" width="{max(x(p75) - x(p25), 1):.1f}" '
            f'height="18" fill="{color}" fill-opacity="0.25" stroke="{color}" rx="3"/>'
            f'<line x1="{x(p50):.1f}" x2="{x(p50):.1f}" y1="{mid - 9}" y2="{mid + 9}" '
            f'stroke="{color}" stroke-width="2.5"/>'
            f'<text x="{x(p95) + 6:.1f}" y="{mid + 4}">{display.seconds(p50)}</text>'
        )
    axis_y = height - 24
    grid = "".join(
        f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="6" y2="{axis_y}" stroke="#f0f0f0"/>'
        f'<text x="{x(t):.1f}" y="{axis_y + 14}" text-anchor="middle">{text}</text>'
        for t, text in zip(ticks, tick_labels(ticks), strict=True)
    )
    svg = (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="latency per model">{grid}{"".join(shapes)}'
        f'<text x="{left}" y="{height - 2}">seconds</text></svg>'
    )
    return (
        "<section><h2>Latency per model</h2>"
        '<p class="note">Successful requests: box from p25 to p75, whiskers p5 to p95, '
        "the thick line and the label at the median.</p>" + svg + "</section>"
    )


def cost_score_section(comparison: Comparison, colors: dict[str, str]) -> str:
    """Each model as a point: cost (or tokens) across, score (or ok rate) up, with its interval."""
    priced = all(r["cost_per_1k_prompts"] is not None for r in comparison.models)
    x_label = "$ per 1,000 prompts" if priced else "tokens"
    score = comparison.scores[0] if comparison.scores else None
    usable = _score_points(comparison, "cost_per_1k_prompts" if priced else "tokens_total")
    if not usable:
        return "<section><h2>Cost and score</h2><p class='note'>Nothing to plot.</p></section>"
    width, height, left, bottom, top_pad, right = 560, 300, 64, 40, 16, 90
    x_ticks = nice_ticks(0.0, max(p[1] for p in usable) * 1.15 or 1.0)
    y_values = [v for p in usable for v in p[2:] if not math.isnan(v)]
    kind = comparison.kinds.get(score) if score else None
    scale = (kind.low, kind.high) if kind else (0.0, 1.0)
    y_ticks = nice_ticks(min(scale[0], *y_values), max(scale[1], *y_values))
    x_max, y_min, y_max = x_ticks[-1], y_ticks[0], y_ticks[-1]

    def sx(v: float) -> float:
        return left + v / x_max * (width - left - right)

    def sy(v: float) -> float:
        return top_pad + (y_max - v) / (y_max - y_min) * (height - top_pad - bottom)

    grid = "".join(
        f'<line x1="{left}" x2="{width - right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
        f'stroke="#f0f0f0"/><text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">'
        f"{text}</text>"
        for t, text in zip(y_ticks, tick_labels(y_ticks), strict=True)
    )
    grid += "".join(
        f'<text x="{sx(t):.1f}" y="{height - bottom + 16}" text-anchor="middle">{text}</text>'
        for t, text in zip(x_ticks, tick_labels(x_ticks), strict=True)
    )
    marks = []
    for model, xv, yv, low, high in usable:
        color = colors[model]
        if not math.isnan(low):
            marks.append(
                f'<line x1="{sx(xv):.1f}" x2="{sx(xv):.1f}" y1="{sy(low):.1f}" '
                f'y2="{sy(high):.1f}" stroke="{color}" stroke-width="2"/>'
            )
        marks.append(
            f'<circle cx="{sx(xv):.1f}" cy="{sy(yv):.1f}" r="6" fill="{color}"/>'
            f'<text x="{sx(xv) + 9:.1f}" y="{sy(yv) - 6:.1f}">{_e(model[:14])}</text>'
        )
    y_label = f"{score} (mean, 95% CI)" if score else "ok rate"
    svg = (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="cost and score">'
        f'{grid}<line x1="{left}" x2="{left}" y1="{top_pad}" y2="{height - bottom}" '
        f'stroke="#9ca3af"/><line x1="{left}" x2="{width - right}" y1="{height - bottom}" '
        f'y2="{height - bottom}" stroke="#9ca3af"/>{"".join(marks)}'
        f'<text x="{(width + left) / 2}" y="{height - 6}" text-anchor="middle">{x_label}</text>'
        f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" '
        f'text-anchor="middle">{_e(y_label)}</text></svg>'
    )
    note = "Up and to the left is better." if priced else "No prices given: tokens stand for cost."
    return f"<section><h2>Cost and score</h2><p class='note'>{note}</p>{svg}</section>"


def _score_points(
    comparison: Comparison, x_key: str
) -> list[tuple[str, float, float, float, float]]:
    """(model, x, mean, low, high) of the first score (or the ok rate), where there is a mean."""
    score = comparison.scores[0] if comparison.scores else None
    points = []
    for row in comparison.models:
        if score is not None:
            interval = row[f"score_{score}"]
            y, low, high = interval.mean, interval.low, interval.high
        else:
            y = low = high = (row["ok_rate"] or 0.0) / 100
        points.append((row["model"], float(row[x_key] or 0.0), y, low, high))
    return [p for p in points if not math.isnan(p[2])]


def trends_section(comparison: Comparison, colors: dict[str, str]) -> str:
    """One line per model across runs: the first score (or ok rate) and median latency."""
    runs: list[str] = []
    for row in comparison.history:
        if row["run"] not in runs:
            runs.append(row["run"])
    score = comparison.scores[0] if comparison.scores else None
    charts = []
    for key, label in (
        (f"score_{score}" if score else "ok_rate", score or "ok %"),
        ("latency_p50_s", "latency p50 (s)"),
    ):
        series: dict[str, list[float | None]] = {}
        for row in comparison.history:
            value = row.get(key)
            if isinstance(value, Interval):
                value = None if math.isnan(value.mean) else value.mean
            series.setdefault(row["model"], [None] * len(runs))[runs.index(row["run"])] = value
        dates = [comparison.dates.get(run) for run in runs]
        charts.append(line_chart(runs, dates, series, colors, label))
    flagged = [r for r in comparison.runs if r["flags"]]
    flags = (
        "".join(
            f"<li><b>{_e(r['model'])}</b> from {_e(r['from'])} to {_e(r['to'])}: "
            f'<span class="tag bad">{_e(", ".join(r["flags"]))}</span></li>'
            for r in flagged
        )
        or "<li>No regressions flagged.</li>"
    )
    return (
        "<section><h2>Run over run</h2><p class='note'>Each run, oldest first, at the time its "
        "last request finished. A regression is a significant fall in a score, the ok rate "
        "down more than 5 points, or latency or cost up more than 25%.</p><div class='grid'>"
        + "".join(charts)
        + f"</div><ul>{flags}</ul></section>"
    )


def _run_label(run: str, date: datetime | None) -> tuple[str, str]:
    """Two lines under a trend point: the date (UTC) and the run's name."""
    stamp = date.strftime("%Y-%m-%d %H:%M") if date is not None else "no date"
    return stamp, run if len(run) <= 16 else run[:15] + "…"


def line_chart(
    runs: list[str],
    dates: list[datetime | None],
    series: dict[str, list[float | None]],
    colors: dict[str, str],
    label: str,
) -> str:
    """A line per model over the runs, with y ticks and dated x labels."""
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values:
        return ""
    width, height, left, bottom, top_pad, right = 560, 240, 64, 52, 14, 64
    ticks = nice_ticks(min(values), max(values))
    low, high = ticks[0], ticks[-1]

    def sx(i: int) -> float:
        return left + (i / max(len(runs) - 1, 1)) * (width - left - right)

    def sy(v: float) -> float:
        return top_pad + (high - v) / (high - low) * (height - top_pad - bottom)

    lines = []
    for model, vs in series.items():
        points = [(sx(i), sy(v)) for i, v in enumerate(vs) if v is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        color = colors.get(model, "#6b7280")
        lines.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            + "".join(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>' for x, y in points
            )
        )
    x_labels = []
    for i, (run, date) in enumerate(zip(runs, dates, strict=True)):
        stamp, name = _run_label(run, date)
        x_labels.append(
            f'<text class="x-tick" x="{sx(i):.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle">{_e(stamp)}</text>'
            f'<text x="{sx(i):.1f}" y="{height - bottom + 30}" text-anchor="middle">'
            f"{_e(name)}</text>"
        )
    y_axis = "".join(
        f'<line x1="{left}" x2="{width - right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
        f'stroke="#f0f0f0"/><text class="y-tick" x="{left - 6}" y="{sy(t) + 4:.1f}" '
        f'text-anchor="end">{text}</text>'
        for t, text in zip(ticks, tick_labels(ticks), strict=True)
    )
    legend = " ".join(f"{swatch(colors.get(model, '#6b7280'))}{_e(model)}" for model in series)
    return (
        f'<div><h3>{_e(label)}</h3><p class="note">{legend}</p>'
        f'<svg class="trend" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{_e(label)} per run">{y_axis}{"".join(x_labels)}{"".join(lines)}</svg></div>'
    )
