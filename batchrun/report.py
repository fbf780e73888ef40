"""The HTML report: one self-contained file (inline CSS, SVG and a little script).

``build_report`` promises a page that needs no network: the summary table,
latency distributions per model, cost against score, the pairwise matrix,
run-over-run trends when several runs are given, and the prompts side by
side with every model's response (searchable; failed and changed rows
marked). Everything shown comes from ``compare.compare``.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from typing import Any

import polars as pl

from batchrun import __version__
from batchrun.compare import Comparison, score_names
from batchrun.dataset import PROMPT_ID
from batchrun.stats import Interval

PALETTE = (
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
)  # fmt: skip
MAX_ROWS = 500

CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f9fafb;
        --bad:#b91c1c; --good:#15803d; }
* { box-sizing: border-box; }
body { font: 14px/1.5 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: var(--ink); margin: 0; background: var(--bg); }
header { background: #111827; color: #f9fafb; padding: 20px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #d1d5db; }
main { padding: 8px 32px 48px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px;
          padding: 16px 20px; margin-top: 20px; }
h2 { font-size: 17px; margin: 0 0 4px; }
.note { color: var(--muted); margin: 0 0 12px; font-size: 13px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.swatch { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 20px;
        align-items: start; }
.tag { display:inline-block; padding:0 6px; border-radius:4px; font-size:11px; font-weight:600; }
.tag.bad { background:#fee2e2; color:var(--bad); }
.tag.good { background:#dcfce7; color:var(--good); }
.tag.changed { background:#fef3c7; color:#92400e; }
tr.failed td { background: #fff7f7; }
tr.changed td:first-child { box-shadow: inset 3px 0 0 #f59e0b; }
.resp { max-width: 360px; white-space: pre-wrap; word-break: break-word; }
.prompt { max-width: 320px; white-space: pre-wrap; word-break: break-word; color: #374151; }
input[type=search] { width: 100%; max-width: 420px; padding: 8px 10px; border: 1px solid #d1d5db;
                     border-radius: 6px; font-size: 14px; margin-bottom: 10px; }
.matrix td { text-align: center; min-width: 110px; }
.ci { display:inline-block; position:relative; width:120px; height:10px; background:#f3f4f6;
      border-radius:5px; vertical-align:middle; margin-left:8px; }
.ci span { position:absolute; top:0; height:10px; border-radius:5px; opacity:.35; }
.ci i { position:absolute; top:-2px; width:2px; height:14px; }
svg text { font-size: 11px; fill: #4b5563; }
"""

SCRIPT = """
document.getElementById('search').addEventListener('input', function (event) {
  var needle = event.target.value.toLowerCase();
  var rows = document.querySelectorAll('#prompts tbody tr');
  var shown = 0;
  rows.forEach(function (row) {
    var hit = row.textContent.toLowerCase().indexOf(needle) !== -1;
    row.style.display = hit ? '' : 'none';
    if (hit) { shown += 1; }
  });
  document.getElementById('shown').textContent = shown;
});
document.body.setAttribute('data-ready', 'yes');
"""


def build_report(comparison: Comparison, title: str | None = None) -> str:
    """The whole HTML page."""
    latest = comparison.latest
    models = [row["model"] for row in comparison.models]
    colors = {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(models)}
    job = _first(latest.frame, "job") or latest.label
    heading = title or f"batchrun report: {job}"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    runs = len(comparison.history and {r["run"] for r in comparison.history}) or 1
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(heading)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{_e(heading)}</h1><p>{latest.frame.height:,} results, "
        f"{len(models)} models, {latest.frame.get_column(PROMPT_ID).n_unique():,} prompts"
        f"{f', {runs} runs' if runs > 1 else ''} &middot; generated {stamp} by batchrun "
        f"{__version__}</p></header><main>",
        _summary(comparison, colors),
        '<div class="grid">',
        _latency_section(latest.frame, models, colors),
        _cost_score_section(comparison, colors),
        "</div>",
        _pairwise_section(comparison),
    ]
    if comparison.history:
        parts.append(_trends_section(comparison, colors))
    parts.append(_prompts_section(comparison, colors))
    parts.append(f"</main><script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _first(frame: pl.DataFrame, column: str) -> Any:
    if column not in frame.columns or frame.height == 0:
        return None
    return frame.get_column(column).drop_nulls().head(1).to_list()[0] if frame.height else None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return _e(value)


def _swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{color}"></span>'


def _summary(comparison: Comparison, colors: dict[str, str]) -> str:
    heads = [
        "model",
        "requests",
        "ok %",
        "errors",
        "latency p50 / p95 / p99 s",
        "ttft p50 s",
        "tokens",
        "cost $",
        "$ / 1k prompts",
    ]
    heads += [f"{name} (95% CI)" for name in comparison.scores]
    rows = []
    for row in comparison.models:
        cells = [
            f"<td>{_swatch(colors[row['model']])}<b>{_e(row['model'])}</b></td>",
            f'<td class="num">{_fmt(row["requests"])}</td>',
            f'<td class="num">{_fmt(row["ok_rate"], 1)}</td>',
            f"<td>{_e(row['errors'])}</td>",
            f'<td class="num">{_fmt(row["latency_p50_s"])} / {_fmt(row["latency_p95_s"])} / '
            f"{_fmt(row['latency_p99_s'])}</td>",
            f'<td class="num">{_fmt(row["ttft_p50_s"])}</td>',
            f'<td class="num">{_fmt(row["tokens_total"])}</td>',
            f'<td class="num">{_fmt(row["cost_usd"], 4)}</td>',
            f'<td class="num">{_fmt(row["cost_per_1k_prompts"], 4)}</td>',
        ]
        for name in comparison.scores:
            cells.append(_interval_cell(row[f"score_{name}"], colors[row["model"]]))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        "<section><h2>Summary</h2>"
        f'<p class="note">Results of {_e(comparison.latest.label)}. Scores are means with '
        "95% intervals (Wilson's for pass/fail scores, Student's t otherwise).</p>"
        "<table><thead><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in heads)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _interval_cell(interval: Interval, color: str) -> str:
    if math.isnan(interval.mean):
        return '<td class="num">&ndash;</td>'
    low = 0.0 if math.isnan(interval.low) else interval.low
    high = 1.0 if math.isnan(interval.high) else interval.high
    scale_high = max(1.0, high)
    bar = (
        f'<span class="ci"><span style="left:{low / scale_high * 100:.1f}%;'
        f'width:{max(high - low, 0.005) / scale_high * 100:.1f}%;background:{color}"></span>'
        f'<i style="left:{interval.mean / scale_high * 100:.1f}%;background:{color}"></i></span>'
    )
    text = (
        f"{interval.mean:.3f}"
        if math.isnan(interval.low)
        else f"{interval.mean:.3f} [{interval.low:.3f}, {interval.high:.3f}]"
    )
    return f'<td class="num">{text}{bar}</td>'


def _latency_section(frame: pl.DataFrame, models: list[str], colors: dict[str, str]) -> str:
    """Box plots of latency per model: whiskers p5..p95, box p25..p75, line at the median."""
    stats = []
    for model in models:
        values = frame.filter((pl.col("model") == model) & (pl.col("status") == "ok"))
        series = values.get_column("latency_s").drop_nulls()
        if series.len() == 0:
            continue
        quantiles = [
            float(series.quantile(q, "linear") or 0.0) for q in (0.05, 0.25, 0.5, 0.75, 0.95)
        ]
        stats.append((model, quantiles))
    if not stats:
        return "<section><h2>Latency</h2><p class='note'>No successful requests.</p></section>"
    width, row_h, left, right = 560, 34, 130, 70
    top = max(q[4] for _, q in stats) * 1.05 or 1.0
    height = row_h * len(stats) + 40

    def x(value: float) -> float:
        return left + value / top * (width - left - right)

    shapes = []
    for i, (model, (p5, p25, p50, p75, p95)) in enumerate(stats):
        y = 10 + i * row_h
        mid = y + row_h / 2 - 4
        color = colors[model]
        shapes.append(
            f'<text x="{left - 8}" y="{mid + 4}" text-anchor="end">{_e(model)}</text>'
            f'<line x1="{x(p5):.1f}" x2="{x(p95):.1f}" y1="{mid}" y2="{mid}" stroke="{color}"/>'
            f'<rect x="{x(p25):.1f}" y="{mid - 9}" width="{max(x(p75) - x(p25), 1):.1f}" '
            f'height="18" fill="{color}" fill-opacity="0.25" stroke="{color}" rx="3"/>'
            f'<line x1="{x(p50):.1f}" x2="{x(p50):.1f}" y1="{mid - 9}" y2="{mid + 9}" '
            f'stroke="{color}" stroke-width="2.5"/>'
            f'<text x="{x(p95) + 6:.1f}" y="{mid + 4}">{p50:.3f} s</text>'
        )
    axis_y = height - 24
    ticks = "".join(
        f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="6" y2="{axis_y}" stroke="#f0f0f0"/>'
        f'<text x="{x(t):.1f}" y="{axis_y + 14}" text-anchor="middle">{t:.2g}</text>'
        for t in _ticks(top)
    )
    svg = (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="latency per model">{ticks}{"".join(shapes)}'
        f'<text x="{left}" y="{height - 2}">seconds</text></svg>'
    )
    return (
        "<section><h2>Latency per model</h2>"
        '<p class="note">Successful requests: box from p25 to p75, whiskers p5 to p95, '
        "the thick line and the label at the median.</p>" + svg + "</section>"
    )


def _quantile(series: pl.Series, q: float) -> float:
    value = series.quantile(q, "linear")
    return float(value) if value is not None else 0.0


def _ticks(top: float, count: int = 5) -> list[float]:
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(top / step) + 1)]


def _cost_score_section(comparison: Comparison, colors: dict[str, str]) -> str:
    """Each model as a point: cost (or tokens) across, score (or ok rate) up, with its interval."""
    rows = comparison.models
    priced = all(r["cost_per_1k_prompts"] is not None for r in rows)
    x_key, x_label = (
        ("cost_per_1k_prompts", "$ per 1,000 prompts") if priced else ("tokens_total", "tokens")
    )
    score = comparison.scores[0] if comparison.scores else None
    points: list[tuple[str, float, float, float, float]] = []
    for row in rows:
        if score is not None:
            interval = row[f"score_{score}"]
            y, low, high = interval.mean, interval.low, interval.high
        else:
            y = low = high = row["ok_rate"] / 100
        points.append((row["model"], float(row[x_key] or 0.0), y, low, high))
    usable = [p for p in points if not math.isnan(p[2])]
    if not usable:
        return "<section><h2>Cost and score</h2><p class='note'>Nothing to plot.</p></section>"
    width, height, left, bottom, top_pad, right = 560, 300, 56, 40, 16, 24
    x_max = max(p[1] for p in usable) * 1.15 or 1.0
    y_values = [v for p in usable for v in p[2:] if not math.isnan(v)]
    y_min, y_max = min(0.0, *y_values), max(1.0, *y_values)

    def sx(v: float) -> float:
        return left + v / x_max * (width - left - right)

    def sy(v: float) -> float:
        return top_pad + (y_max - v) / (y_max - y_min) * (height - top_pad - bottom)

    grid = "".join(
        f'<line x1="{left}" x2="{width - right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
        f'stroke="#f0f0f0"/><text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">'
        f"{t:.2g}</text>"
        for t in _ticks(y_max - y_min)
        if y_min + t <= y_max
    )
    grid += "".join(
        f'<text x="{sx(t):.1f}" y="{height - bottom + 16}" text-anchor="middle">{t:.3g}</text>'
        for t in _ticks(x_max)
    )
    marks = []
    for model, xv, yv, low, high in usable:
        color = colors[model]
        bar = (
            ""
            if math.isnan(low)
            else f'<line x1="{sx(xv):.1f}" x2="{sx(xv):.1f}" y1="{sy(low):.1f}" '
            f'y2="{sy(high):.1f}" stroke="{color}" stroke-width="2"/>'
        )
        marks.append(
            f'{bar}<circle cx="{sx(xv):.1f}" cy="{sy(yv):.1f}" r="6" fill="{color}"/>'
            f'<text x="{sx(xv) + 9:.1f}" y="{sy(yv) - 6:.1f}">{_e(model)}</text>'
        )
    y_label = f"{score} (mean, 95% CI)" if score else "ok rate"
    svg = (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="cost and score">'
        f"{grid}"
        f'<line x1="{left}" x2="{left}" y1="{top_pad}" y2="{height - bottom}" stroke="#9ca3af"/>'
        f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}" '
        f'stroke="#9ca3af"/>{"".join(marks)}'
        f'<text x="{(width + left) / 2}" y="{height - 6}" text-anchor="middle">{x_label}</text>'
        f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" '
        f'text-anchor="middle">{_e(y_label)}</text></svg>'
    )
    note = "Up and to the left is better." if priced else "No prices given: tokens stand for cost."
    return f"<section><h2>Cost and score</h2><p class='note'>{note}</p>{svg}</section>"


def _pairwise_section(comparison: Comparison) -> str:
    if not comparison.pairwise:
        return (
            "<section><h2>Pairwise</h2><p class='note'>No scores to compare: declare "
            "<code>scores:</code> in the job, or run <code>batchrun score</code>.</p></section>"
        )
    models = [row["model"] for row in comparison.models]
    blocks = []
    for name in comparison.scores:
        cells: dict[tuple[str, str], dict[str, Any]] = {}
        for pair in comparison.pairwise:
            if pair["score"] == name:
                cells[(pair["model_a"], pair["model_b"])] = pair
        head = "".join(f"<th>{_e(m)}</th>" for m in models)
        body = []
        for a in models:
            tds = [f"<th>{_e(a)}</th>"]
            for b in models:
                row = cells.get((a, b))
                flipped = False
                if row is None and (b, a) in cells:
                    row, flipped = cells[(b, a)], True
                if a == b or row is None:
                    tds.append("<td>&middot;</td>")
                    continue
                test = row["test"]
                wins, losses = (test.losses, test.wins) if flipped else (test.wins, test.losses)
                diff = (
                    (row["mean_b"] - row["mean_a"]) if flipped else (row["mean_a"] - row["mean_b"])
                )
                shade = _shade(diff, test.significant)
                verdict = (
                    '<span class="tag good">better</span>'
                    if test.significant and diff > 0
                    else '<span class="tag bad">worse</span>'
                    if test.significant and diff < 0
                    else "<span class='note'>no clear difference</span>"
                )
                tds.append(
                    f'<td style="background:{shade}"><b>{diff:+.3f}</b><br>'
                    f"{wins}&ndash;{test.ties}&ndash;{losses} &middot; p={test.p_value:.3g}"
                    f"<br>{verdict}</td>"
                )
            body.append("<tr>" + "".join(tds) + "</tr>")
        blocks.append(
            f"<h3>{_e(name)}</h3><table class='matrix'><thead><tr><th>row vs column</th>{head}"
            f"</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )
    return (
        "<section><h2>Pairwise</h2><p class='note'>Each cell: the row model's mean minus the "
        "column model's, on the prompts both answered; wins&ndash;ties&ndash;losses; the "
        "paired test's p (McNemar for pass/fail scores, Wilcoxon otherwise).</p>"
        + "".join(blocks)
        + "</section>"
    )


def _shade(diff: float, significant: bool) -> str:
    if not significant:
        return "#ffffff"
    return "#dcfce7" if diff > 0 else "#fee2e2"


def _trends_section(comparison: Comparison, colors: dict[str, str]) -> str:
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
        charts.append(_line_chart(runs, series, colors, label))
    flagged = [r for r in comparison.runs if r["flags"] != "-"]
    flags = (
        "".join(
            f"<li><b>{_e(r['model'])}</b> from {_e(r['from'])} to {_e(r['to'])}: "
            f'<span class="tag bad">{_e(r["flags"])}</span></li>'
            for r in flagged
        )
        or "<li>No regressions flagged.</li>"
    )
    return (
        "<section><h2>Run over run</h2><p class='note'>Each run, oldest first. A regression "
        "is a significant fall in a score, the ok rate down more than 5 points, or latency "
        "or cost up more than 25%.</p><div class='grid'>"
        + "".join(charts)
        + f"</div><ul>{flags}</ul></section>"
    )


def _line_chart(
    runs: list[str], series: dict[str, list[float | None]], colors: dict[str, str], label: str
) -> str:
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values:
        return ""
    width, height, left, bottom, top_pad, right = 520, 220, 64, 46, 14, 20
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5, high + 0.5
    span = high - low

    def sx(i: int) -> float:
        return left + (i / max(len(runs) - 1, 1)) * (width - left - right)

    def sy(v: float) -> float:
        return top_pad + (high + 0.05 * span - v) / (1.1 * span) * (height - top_pad - bottom)

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
    labels = "".join(
        f'<text x="{sx(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
        f"{_e(run[-16:])}</text>"
        for i, run in enumerate(runs)
    )
    axis = (
        f'<text x="{left - 6}" y="{sy(high) + 4:.1f}" text-anchor="end">{high:.3g}</text>'
        f'<text x="{left - 6}" y="{sy(low) + 4:.1f}" text-anchor="end">{low:.3g}</text>'
    )
    legend = " ".join(f"{_swatch(colors.get(model, '#6b7280'))}{_e(model)}" for model in series)
    return (
        f'<div><h3>{_e(label)}</h3><p class="note">{legend}</p>'
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{_e(label)} per run">{axis}{labels}{"".join(lines)}</svg></div>'
    )


def _prompts_section(comparison: Comparison, colors: dict[str, str]) -> str:
    frame = comparison.latest.frame
    models = [row["model"] for row in comparison.models]
    scores = score_names(frame)
    changed: set[tuple[str, str]] = set()
    if comparison.changed.height:
        latest = comparison.latest.label
        recent = comparison.changed.filter(pl.col("to") == latest)
        changed = {(p, m) for p, m in recent.select(PROMPT_ID, "model").iter_rows()}
    keys = frame.select(PROMPT_ID, "sample").unique().sort(PROMPT_ID, "sample").head(MAX_ROWS)
    by_key: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    wanted = [
        PROMPT_ID,
        "sample",
        "model",
        "status",
        "response",
        "error_message",
        "prompt",
        *[f"score_{s}" for s in scores],
    ]
    subset = frame.join(keys, on=[PROMPT_ID, "sample"], how="semi").select(
        [c for c in wanted if c in frame.columns]
    )
    prompts: dict[tuple[str, int], str] = {}
    for row in subset.iter_rows(named=True):
        key = (row[PROMPT_ID], row["sample"])
        by_key.setdefault(key, {})[row["model"]] = row
        prompts.setdefault(key, row.get("prompt") or "")
    head = "<th>prompt</th>" + "".join(f"<th>{_swatch(colors[m])}{_e(m)}</th>" for m in models)
    body = []
    for (prompt_id, sample), answers in sorted(by_key.items()):
        failed = any(a["status"] != "ok" for a in answers.values())
        row_changed = any((prompt_id, m) in changed for m in answers)
        classes = " ".join(c for c, on in (("failed", failed), ("changed", row_changed)) if on)
        cells = [
            f'<td class="prompt"><b>{_e(prompt_id)}</b>'
            f"{f' #{sample}' if sample else ''}<br>{_e(prompts[(prompt_id, sample)])}</td>"
        ]
        for model in models:
            found = answers.get(model)
            if found is None:
                cells.append("<td>&ndash;</td>")
                continue
            answer: dict[str, Any] = found
            tags = []
            if answer["status"] != "ok":
                tags.append('<span class="tag bad">failed</span>')
            if (prompt_id, model) in changed:
                tags.append('<span class="tag changed">changed</span>')
            for name in scores:
                value = answer.get(f"score_{name}")
                if value is not None:
                    kind = "good" if value >= 1 or value > 0.5 else "bad"
                    tags.append(f'<span class="tag {kind}">{_e(name)} {value:g}</span>')
            text = answer["response"] if answer["status"] == "ok" else answer["error_message"]
            cells.append(f'<td class="resp">{" ".join(tags)}<br>{_e(text or "")}</td>')
        body.append(f'<tr class="{classes}">' + "".join(cells) + "</tr>")
    total = frame.select(PROMPT_ID, "sample").unique().height
    more = f" (the first {MAX_ROWS} of {total:,})" if total > MAX_ROWS else ""
    return (
        "<section><h2>Prompts side by side</h2>"
        f"<p class='note'>Every model's answer to each prompt{more}. Failed rows are tinted, "
        "changed rows have an amber edge.</p>"
        '<input type="search" id="search" placeholder="Search prompts and answers"> '
        f'<span class="note"><span id="shown">{len(body)}</span> shown</span>'
        f"<table id='prompts'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}"
        "</tbody></table></section>"
    )
