"""The HTML report: one self-contained file (inline CSS, SVG and a little script).

``build_report`` promises a page that needs no network: the summary table,
latency distributions per model, cost against score, the pairwise matrix,
run-over-run trends when several runs are given, and the prompts side by
side with every model's response (searchable; failed and changed rows
marked). Everything shown comes from ``compare.compare``.
"""

from __future__ import annotations

import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from batchrun import __version__, display
from batchrun.compare import Comparison, ScoreKind
from batchrun.compare_render import errors_text
from batchrun.dataset import PROMPT_ID
from batchrun.report_charts import cost_score_section, latency_section, swatch, trends_section
from batchrun.report_media import media_section
from batchrun.stats import Interval

PALETTE = (
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
)  # fmt: skip
PAGE_SIZE = 100

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
          padding: 16px 20px; margin-top: 20px; overflow-x: auto; }
h2 { font-size: 17px; margin: 0 0 4px; }
.note { color: var(--muted); margin: 0 0 12px; font-size: 13px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { font-size: 12px; letter-spacing: .02em; color: var(--muted); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.swatch { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 20px;
        align-items: start; }
.tag { display:inline-block; padding:0 6px; border-radius:4px; font-size:11px; font-weight:600; }
.tag.bad { background:#fee2e2; color:var(--bad); }
.tag.good { background:#dcfce7; color:var(--good); }
.tag.score { color:#111827; }
.n { color: var(--muted); font-size: 11px; margin-left: 4px; }
.pager button { margin: 0 4px; }
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
var data = JSON.parse(document.getElementById('prompt-data').textContent);
var state = {needle: '', page: 0, hits: data.rows};
function cell(tag, className, text) {
  var node = document.createElement(tag);
  if (className) { node.className = className; }
  if (text !== undefined) { node.textContent = text; }
  return node;
}
function rowOf(record) {
  var tr = cell('tr', record.classes);
  tr.setAttribute('data-id', record.id);
  var first = cell('td', 'prompt');
  first.appendChild(cell('b', '', record.id + (record.sample ? ' #' + record.sample : '')));
  first.appendChild(document.createElement('br'));
  first.appendChild(document.createTextNode(record.prompt));
  tr.appendChild(first);
  record.answers.forEach(function (answer) {
    if (answer === null) { tr.appendChild(cell('td', '', '\u2013')); return; }
    var td = cell('td', 'resp');
    answer.tags.forEach(function (tag) {
      var span = cell('span', 'tag ' + tag[0], tag[1]);
      if (tag[2]) { span.style.background = tag[2]; }
      td.appendChild(span);
      td.appendChild(document.createTextNode(' '));
    });
    td.appendChild(document.createElement('br'));
    td.appendChild(document.createTextNode(answer.text));
    tr.appendChild(td);
  });
  return tr;
}
function show() {
  var pages = Math.max(1, Math.ceil(state.hits.length / data.pageSize));
  state.page = Math.min(Math.max(state.page, 0), pages - 1);
  var body = document.querySelector('#prompts tbody');
  body.textContent = '';
  var start = state.page * data.pageSize;
  state.hits.slice(start, start + data.pageSize).forEach(function (record) {
    body.appendChild(rowOf(record));
  });
  document.getElementById('shown').textContent = state.hits.length.toLocaleString('en-US');
  document.getElementById('page').textContent = (state.page + 1) + ' of ' + pages;
}
function search(needle) {
  state.needle = needle.toLowerCase();
  state.hits = data.rows.filter(function (record) {
    return record.text.indexOf(state.needle) !== -1;
  });
  state.page = 0;
}
var input = document.getElementById('search');
input.addEventListener('input', function (event) { search(event.target.value); show(); });
document.getElementById('prev').addEventListener('click', function () { state.page -= 1; show(); });
document.getElementById('next').addEventListener('click', function () { state.page += 1; show(); });
var hash = new URLSearchParams(window.location.hash.slice(1));
if (hash.get('q')) { input.value = hash.get('q'); search(hash.get('q')); }
if (hash.get('page')) { state.page = parseInt(hash.get('page'), 10) - 1; }
show();
document.body.setAttribute('data-ready', 'yes');
"""


def build_report(
    comparison: Comparison, title: str | None = None, links_from: Path | None = None
) -> str:
    """The whole HTML page; files too large to inline are linked from ``links_from``."""
    latest = comparison.latest
    models = [row["model"] for row in comparison.models]
    colors = {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(models)}
    job = _first(latest.frame, "job") or latest.label
    heading = title or f"batchrun report: {job}"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    runs = len(comparison.dates)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(heading)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{_e(heading)}</h1><p>{latest.frame.height:,} results, "
        f"{len(models)} models, {comparison.prompts:,} prompts, {comparison.samples} "
        f"sample{'s' if comparison.samples > 1 else ''} each"
        f"{f', {runs} runs' if runs > 1 else ''} &middot; generated {stamp} by batchrun "
        f"{__version__}</p></header><main>",
        _summary(comparison, colors),
        media_section(latest.frame, models, [p.parent for p in latest.paths], links_from),
        '<div class="grid">',
        latency_section(latest.frame, models, colors),
        cost_score_section(comparison, colors),
        "</div>",
        _pairwise_section(comparison),
    ]
    if comparison.history:
        parts.append(trends_section(comparison, colors))
    parts.append(_prompts_section(comparison, colors))
    parts.append(f"</main><script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _first(frame: pl.DataFrame, column: str) -> Any:
    if column not in frame.columns or frame.height == 0:
        return None
    values = frame.get_column(column).drop_nulls().head(1).to_list()
    return values[0] if values else None


def _n(count: int) -> str:
    return f'<span class="n">n={count:,}</span>'


def _summary(comparison: Comparison, colors: dict[str, str]) -> str:
    judged = any(row["judge_requests"] is not None for row in comparison.models)
    heads = ["model", "prompts", "requests", "ok %", "errors", "latency p50 / p95 / p99",
             "ttft p50", "out tokens mean", "tokens", "cost", "per 1k prompts"]  # fmt: skip
    heads += ["judge requests", "judge cost"] if judged else []
    heads += [f"{name} (95% CI)" for name in comparison.scores]
    rows = []
    for row in comparison.models:
        figures = [
            display.count(row["prompts"]),
            display.count(row["requests"]),
            display.percent(row["ok_rate"]),
        ]
        cells = [
            f'<td style="white-space:nowrap">{swatch(colors[row["model"]])}'
            f"<b>{_e(row['model'])}</b></td>"
        ]
        cells += [f'<td class="num">{figure}</td>' for figure in figures]
        cells.append(f"<td>{_e(errors_text(row['errors']))}</td>")
        latencies = " / ".join(
            display.seconds(row[k]) for k in ("latency_p50_s", "latency_p95_s", "latency_p99_s")
        )
        figures = [
            latencies,
            display.seconds(row["ttft_p50_s"]),
            display.sig(row["completion_tokens_mean"]) + _n(row["completion_tokens_n"]),
            display.count(row["tokens_total"]),
            display.money(row["cost_usd"]),
            display.money(row["cost_per_1k_prompts"]),
        ]
        if judged:
            figures += [display.count(row["judge_requests"]), display.money(row["judge_cost_usd"])]
        cells += [f'<td class="num">{figure}</td>' for figure in figures]
        for name in comparison.scores:
            kind = comparison.kinds[name]
            cells.append(_interval_cell(row[f"score_{name}"], colors[row["model"]], kind))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        "<section><h2>Summary</h2>"
        f'<p class="note">Results of {_e(comparison.latest.label)}. Scores are means over '
        f"prompts (n = prompts; with several samples, each prompt's samples are averaged "
        "first, a pass/fail score by majority) with 95% intervals (Wilson's for pass/fail "
        "scores, Student's t otherwise).</p><table><thead><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in heads)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def position(value: float, kind: ScoreKind) -> float:
    """Where ``value`` sits on its score's scale, 0 (worst) to 1 (best)."""
    share = min(max((value - kind.low) / (kind.high - kind.low), 0.0), 1.0)
    return 1.0 - share if kind.lower_better else share


def score_color(value: float, kind: ScoreKind) -> str:
    """A background from red (the scale's low end) through amber to green (its high end)."""
    return f"hsl({120 * position(value, kind):.0f}, 70%, 85%)"


def _interval_cell(interval: Interval, color: str, kind: ScoreKind) -> str:
    if math.isnan(interval.mean):
        return '<td class="num">&ndash;</td>'
    low = kind.low if math.isnan(interval.low) else interval.low
    high = kind.high if math.isnan(interval.high) else interval.high
    left, right = position(low, kind), position(high, kind)
    bar = (
        f'<span class="ci"><span style="left:{left * 100:.1f}%;'
        f'width:{max(right - left, 0.005) * 100:.1f}%;background:{color}"></span>'
        f'<i style="left:{position(interval.mean, kind) * 100:.1f}%;background:{color}"></i></span>'
    )
    text = display.sig(interval.mean)
    if not math.isnan(interval.low):
        text += f" [{display.sig(interval.low)}, {display.sig(interval.high)}]"
    return f'<td class="num">{text}{_n(interval.n)}{bar}</td>'


def _pair_cell(row: dict[str, Any], flipped: bool) -> str:
    test = row["test"]
    wins, losses = (test.losses, test.wins) if flipped else (test.wins, test.losses)
    diff = (row["mean_b"] - row["mean_a"]) if flipped else (row["mean_a"] - row["mean_b"])
    if test.p_value is None:
        verdict = f"<span class='note'>no test: {_e(test.untested)}</span>"
    elif test.significant:
        verdict = (
            '<span class="tag good">better</span>'
            if diff > 0
            else '<span class="tag bad">worse</span>'
        )
    else:
        verdict = "<span class='note'>no clear difference</span>"
    p = "" if test.p_value is None else f" &middot; p={test.p_value:.3g}"
    return (
        f'<td style="background:{_shade(diff, test.significant)}">'
        f"<b>{display.change_number(diff)}</b>{_n(row['prompts'])}<br>"
        f"{wins}&ndash;{test.ties}&ndash;{losses}{p}<br>{verdict}</td>"
    )


def _pairwise_section(comparison: Comparison) -> str:
    if not comparison.pairwise:
        return (
            "<section><h2>Pairwise</h2><p class='note'>No scores to compare: declare "
            "<code>scores:</code> in the job, or run <code>batchrun score</code>.</p></section>"
        )
    models = [row["model"] for row in comparison.models]
    blocks = []
    for name in comparison.scores:
        cells = {(p["model_a"], p["model_b"]): p for p in comparison.pairwise if p["score"] == name}
        head = "".join(f"<th>{_e(m)}</th>" for m in models)
        body = []
        for a in models:
            tds = [f"<th>{_e(a)}</th>"]
            for b in models:
                if a != b and (a, b) in cells:
                    tds.append(_pair_cell(cells[(a, b)], flipped=False))
                elif a != b and (b, a) in cells:
                    tds.append(_pair_cell(cells[(b, a)], flipped=True))
                else:
                    tds.append("<td>&middot;</td>")
            body.append("<tr>" + "".join(tds) + "</tr>")
        blocks.append(
            f"<h3>{_e(name)}</h3><table class='matrix'><thead><tr><th>row vs column</th>{head}"
            f"</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )
    return (
        "<section><h2>Pairwise</h2><p class='note'>Each cell: the row model's mean minus the "
        "column model's, on the n prompts both answered; wins&ndash;ties&ndash;losses; the "
        "paired test's p (McNemar for pass/fail scores, Wilcoxon otherwise), or why there is "
        "no test (fewer than 5 prompts, or fewer than 5 that differ).</p>"
        + "".join(blocks)
        + "</section>"
    )


def _shade(diff: float, significant: bool) -> str:
    if not significant:
        return "#ffffff"
    return "#dcfce7" if diff > 0 else "#fee2e2"


def _prompt_records(comparison: Comparison) -> list[dict[str, Any]]:
    """Every (prompt, sample) of the latest run with each model's answer, as the page's data."""
    frame = comparison.latest.frame
    models = [row["model"] for row in comparison.models]
    changed: set[tuple[str, str]] = set()
    if comparison.changed.height:
        recent = comparison.changed.filter(pl.col("to") == comparison.latest.label)
        changed = {(p, m) for p, m in recent.select(PROMPT_ID, "model").iter_rows()}
    wanted = [PROMPT_ID, "sample", "model", "status", "response", "error_message", "prompt"]
    wanted.append("ranking")
    wanted += [f"score_{s}" for s in comparison.scores]
    by_key: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for row in frame.select([c for c in wanted if c in frame.columns]).iter_rows(named=True):
        by_key.setdefault((row[PROMPT_ID], row["sample"]), {})[row["model"]] = row
    records = []
    for (prompt_id, sample), answers in sorted(by_key.items()):
        prompt = next((a.get("prompt") for a in answers.values() if a.get("prompt")), "") or ""
        cells = [_answer(answers.get(m), (prompt_id, m) in changed, comparison) for m in models]
        failed = any(a["status"] != "ok" for a in answers.values())
        row_changed = any((prompt_id, m) in changed for m in answers)
        text = " ".join([prompt_id, prompt, *[c["text"] for c in cells if c is not None]])
        records.append(
            {
                "id": prompt_id,
                "sample": sample,
                "prompt": prompt,
                "classes": " ".join(
                    c for c, on in (("failed", failed), ("changed", row_changed)) if on
                ),
                "answers": cells,
                "text": text.lower(),
            }
        )
    return records


def _answer(
    answer: dict[str, Any] | None, changed: bool, comparison: Comparison
) -> dict[str, Any] | None:
    """One model's answer: its text and tags (failed, changed, each score on its scale)."""
    if answer is None:
        return None
    tags: list[list[str]] = []
    if answer["status"] != "ok":
        tags.append(["bad", "failed", ""])
    if changed:
        tags.append(["changed", "changed", ""])
    for name in comparison.scores:
        value = answer.get(f"score_{name}")
        if value is not None:
            kind = comparison.kinds[name]
            tags.append(["score", f"{name} {value:g}", score_color(value, kind)])
    text = answer["response"] if answer["status"] == "ok" else answer.get("error_message")
    if answer["status"] == "ok" and text is None and answer.get("ranking") is not None:
        text = "ranking: " + ", ".join(str(i) for i in answer["ranking"])
    return {"tags": tags, "text": text or ""}


def _prompts_section(comparison: Comparison, colors: dict[str, str]) -> str:
    records = _prompt_records(comparison)
    data = json.dumps({"pageSize": PAGE_SIZE, "rows": records}, ensure_ascii=False)
    # Inside <script>, "</" could end the element early: JSON allows "<" escaped.
    data = data.replace("<", "\\u003c")
    head = "<th>prompt</th>" + "".join(
        f"<th>{swatch(colors[row['model']])}{_e(row['model'])}</th>" for row in comparison.models
    )
    return (
        "<section><h2>Prompts side by side</h2>"
        f"<p class='note'>Every model's answer to each of the {len(records):,} prompts (and "
        f"samples), {PAGE_SIZE} a page; the search looks through all of them. Failed rows are "
        "tinted, changed rows have an amber edge; a score's colour runs from red at the low "
        "end of its scale to green at the high end.</p>"
        '<input type="search" id="search" placeholder="Search prompts and answers"> '
        '<span class="note"><span id="shown">0</span> match &middot; page '
        '<span id="page">1 of 1</span></span> <span class="pager">'
        '<button id="prev" type="button">previous</button>'
        '<button id="next" type="button">next</button></span>'
        "<noscript><p class='note'>The prompts need JavaScript.</p></noscript>"
        f"<table id='prompts'><thead><tr>{head}</tr></thead><tbody></tbody></table>"
        f'<script type="application/json" id="prompt-data">{data}</script></section>'
    )
