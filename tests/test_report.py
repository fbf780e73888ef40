"""The HTML report (issue 13, finding 9) rendered in headless Chromium, and the demo's figures
in `compare` and the report against a hand computation with Polars (issue 13, done-when)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from chromium import CHROMIUM_FLAGS, chromium_or_skip
from conftest import invoke

from batchrun import display

ROOT = Path(__file__).resolve().parent.parent
# Runs after the report's own script: what a reader would see, written onto <body> as JSON.
CHECK = """<script>
(function () {
  var out = {};
  function text(node) { return node.textContent; }
  out.heads = Array.from(document.querySelectorAll('table.matrix thead th'))
    .map(function (th) { return th.innerText; });
  out.rows = Array.from(document.querySelectorAll('#prompts tbody tr'))
    .map(function (tr) { return tr.getAttribute('data-id'); });
  out.shown = document.getElementById('shown').textContent;
  out.tags = Array.from(document.querySelectorAll('#prompts .tag.score')).map(function (t) {
    return [t.textContent, getComputedStyle(t).backgroundColor];
  });
  out.trends = Array.from(document.querySelectorAll('svg.trend')).map(function (svg) {
    var box = svg.viewBox.baseVal, clipped = [];
    svg.querySelectorAll('text').forEach(function (t) {
      var b = t.getBBox();
      if (b.x < box.x - 0.5 || b.y < box.y - 0.5 || b.x + b.width > box.x + box.width + 0.5 ||
          b.y + b.height > box.y + box.height + 0.5) { clipped.push(t.textContent); }
    });
    return {
      y: Array.from(svg.querySelectorAll('text.y-tick')).map(text),
      x: Array.from(svg.querySelectorAll('text.x-tick')).map(text),
      clipped: clipped
    };
  });
  document.body.setAttribute('data-check', JSON.stringify(out));
})();
</script></body>"""


def seen_in_chromium(page: Path, profile: Path, fragment: str = "") -> dict[str, Any]:
    """Open ``page`` (with ``#fragment``) headless and return what CHECK found."""
    checked = page.with_name("checked.html")
    checked.write_text(page.read_text().replace("</body>", CHECK, 1))
    dom = subprocess.run(
        [chromium_or_skip(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
         f"file://{checked.resolve()}{fragment}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    match = re.search(r'data-check="([^"]*)"', dom.stdout)
    assert match, dom.stderr[-2000:]
    found: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return found


def judged_run(path: str, models: list[str], prompts: int, start: datetime) -> None:
    """A results file with a judge score (1..10) of 2 for the first model, 9 for the others."""
    rows = [
        {"run_id": path, "job": "weekly", "prompt_id": f"p{i:04d}", "model": model, "sample": 0,
         "status": "ok", "error_type": None, "response": f"answer {i}", "prompt": f"question {i}",
         "latency_s": 0.2 + 0.01 * (i % 7), "total_tokens": 100, "completion_tokens": 20,
         "cost_usd": 0.0002, "finished_at": start + timedelta(seconds=i),
         "score_quality": 2.0 if model == models[0] else 9.0, "score_quality_reason": "ok"}
        for model in models
        for i in range(prompts)
    ]  # fmt: skip
    pl.DataFrame(
        rows, schema_overrides={"sample": pl.Int32, "error_type": pl.String}
    ).write_parquet(path)


def test_finding9_report_reads_right(tmp_path: Path) -> None:
    """Judge colours follow the 1..10 scale, n beside means, every prompt reachable by page and
    by search, model ids as written, trend axes with three or more ticks, dates, no clipping."""
    chromium_or_skip()
    models = ["Claude-Sonnet", "gpt-4o-mini"]
    week1 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    judged_run("week1.parquet", models, 700, week1)
    judged_run("week2.parquet", models, 700, week1 + timedelta(days=7))
    result = invoke("report", "week1.parquet", "week2.parquet", "-o", "report.html")
    assert result.exit_code == 0, result.stderr
    page = Path("report.html")
    assert "text-transform: uppercase" not in page.read_text()
    assert "n=700" in page.read_text()
    profile = tmp_path / "profile"
    seen = seen_in_chromium(page, profile)
    assert seen["heads"][1:] == models
    assert seen["shown"] == "700" and len(seen["rows"]) == 100
    colors = dict(seen["tags"])
    low = [int(c) for c in re.findall(r"\d+", colors["quality 2"])]
    high = [int(c) for c in re.findall(r"\d+", colors["quality 9"])]
    assert low[0] > low[1] and high[1] > high[0]  # 2 of 10 reads red, 9 of 10 green
    assert len(seen["trends"]) == 2
    for chart in seen["trends"]:
        assert len(chart["y"]) >= 3 and chart["clipped"] == []
        assert chart["x"] == ["2026-11-02 09:11", "2026-11-09 09:11"]
    deep = seen_in_chromium(page, profile, "#q=p0650")
    assert deep["rows"] == ["p0650"] and deep["shown"] == "1"
    last = seen_in_chromium(page, profile, "#page=7")
    assert last["rows"][-1] == "p0699"


def test_demo_figures_match_a_polars_computation(tmp_path: Path) -> None:
    """The demo run: compare --format json and the report show what Polars computes from the
    results file and the judge's file by hand."""
    shutil.copytree(ROOT / "jobs", "jobs")
    shutil.copytree(ROOT / "sample_data", "sample_data")
    assert invoke("run", "jobs/demo.yaml", "--quiet").exit_code == 0
    data = json.loads(invoke("compare", "results/demo.parquet", "--format", "json").stdout)
    frame = pl.read_parquet("results/demo.parquet")
    judge = pl.read_parquet("results/demo.judge-judged.parquet")
    judged = frame.join(
        judge.select(pl.col("prompt_id").alias("request_key"), pl.col("cost_usd").alias("jc")),
        on="request_key",
    )
    expected = (
        frame.group_by("model")
        .agg(
            requests=pl.len(),
            ok_rate=100 * (pl.col("status") == "ok").mean(),
            cost=pl.col("cost_usd").sum(),
            p50=pl.col("latency_s").filter(pl.col("status") == "ok").quantile(0.5, "linear"),
            correct=pl.col("score_correct").mean(),
            correct_n=pl.col("score_correct").count(),
        )
        .join(judged.group_by("model").agg(jn=pl.len(), jc=pl.col("jc").sum()), on="model")
    )
    models = {m["model"]: m for m in data["models"]}
    assert data["prompts"] == frame["prompt_id"].n_unique() == 50 and data["samples"] == 1
    page_text = ""
    assert invoke("report", "results/demo.parquet", "-o", "report.html").exit_code == 0
    page_text = Path("report.html").read_text()
    for row in expected.iter_rows(named=True):
        got = models[row["model"]]
        assert got["requests"] == row["requests"] == 50
        assert got["ok_rate"] == pytest.approx(row["ok_rate"])
        assert got["cost_usd"] == pytest.approx(row["cost"])
        assert got["latency_p50_s"] == pytest.approx(row["p50"])
        assert got["score_correct"]["mean"] == pytest.approx(row["correct"])
        assert got["score_correct"]["n"] == row["correct_n"]
        assert got["judge_requests"] == row["jn"]
        assert got["judge_cost_usd"] == pytest.approx(row["jc"])
        for shown in (display.money(row["cost"]), display.money(row["jc"]),
                      display.sig(row["correct"]), display.seconds(row["p50"])):  # fmt: skip
            assert shown in page_text
