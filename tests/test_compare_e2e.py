"""Scores, cost, judges, `batchrun compare` and `batchrun report` on real runs."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from chromium import CHROMIUM_FLAGS, chromium_or_skip
from conftest import invoke, job_dict, make_prompts, write_job

from batchrun.gateway import GatewayThread

SCORES = [{"name": "correct", "grader": "numeric", "expected_column": "expected"}]
RUBRIC = (
    "Question: {{ question }}\nExpected: {{ expected }}\nAnswer: {{ response }}\n"
    'Reply with JSON: {"score": 1-10, "reason": "..."}'
)


def scored_run(
    start_gateway: Callable[..., GatewayThread],
    accuracy: dict[str, float],
    output: str,
    rows: int = 60,
    **job: object,
) -> GatewayThread:
    gw = start_gateway(accuracy=accuracy, model_latency_ms={"model-b": 5})
    make_prompts(Path("prompts.parquet"), rows)
    spec = job_dict(gw.url, scores=SCORES, output={"path": output}, **job)
    write_job(Path("job.yaml"), spec)
    assert invoke("run", "job.yaml", "--quiet").exit_code == 0
    return gw


def test_scores_written_in_results(start_gateway: Callable[..., GatewayThread]) -> None:
    """The declared score becomes score_correct: 1/0 for ok rows, matching the accuracy."""
    scored_run(start_gateway, {"model-a": 1.0, "model-b": 0.0}, "out/r.parquet")
    frame = pl.read_parquet("out/r.parquet")
    assert frame.filter(pl.col("model") == "model-a")["score_correct"].to_list() == [1.0] * 60
    assert frame.filter(pl.col("model") == "b")["score_correct"].to_list() == [0.0] * 60


def test_compare_shows_intervals_and_significance(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """A real difference is marked significant; the table has intervals per model."""
    scored_run(start_gateway, {"model-a": 0.95, "model-b": 0.4}, "out/r.parquet")
    table = invoke("compare", "out/r.parquet").stdout
    assert "Models (r)" in table and "correct (95% CI)" in table
    assert "(mcnemar) *" in table
    data = json.loads(invoke("compare", "out/r.parquet", "--format", "json").stdout)
    models = {m["model"]: m for m in data["models"]}
    a = models["model-a"]["score_correct"]
    assert a["low"] < a["mean"] < a["high"] and a["n"] == 60
    pair = data["pairwise"][0]["test"]
    assert pair["significant"] and pair["test"] == "mcnemar"
    markdown = invoke("compare", "out/r.parquet", "--format", "markdown").stdout
    assert markdown.startswith("### Models (r)") and "| model |" in markdown
    rows = list(
        csv.reader(io.StringIO(invoke("compare", "out/r.parquet", "--format", "csv").stdout))
    )
    assert rows[0][0] == "model" and {r[0] for r in rows[1:]} == {"model-a", "b"}


def test_wide_side_by_side(start_gateway: Callable[..., GatewayThread]) -> None:
    """--wide writes one row per prompt with each model's response and score."""
    scored_run(start_gateway, {"model-a": 1.0, "model-b": 1.0}, "out/r.parquet", rows=10)
    assert invoke("compare", "out/r.parquet", "--wide", "wide.parquet").exit_code == 0
    wide = pl.read_parquet("wide.parquet")
    assert wide.height == 10
    assert {"response_model-a", "response_b", "score_correct_model-a", "score_correct_b"} <= set(
        wide.columns
    )
    assert invoke("compare", "out/r.parquet", "--wide", "wide.csv").exit_code == 0
    assert pl.read_csv("wide.csv").height == 10


def test_run_over_run_flags_regressions(start_gateway: Callable[..., GatewayThread]) -> None:
    """Last week's run against this week's: a significant fall in a score is flagged."""
    scored_run(start_gateway, {"model-a": 0.95, "model-b": 0.9}, "out/week1.parquet")
    scored_run(start_gateway, {"model-a": 0.3, "model-b": 0.9}, "out/week2.parquet")
    data = json.loads(
        invoke("compare", "out/week1.parquet", "out/week2.parquet", "--format", "json").stdout
    )
    runs = {r["model"]: r for r in data["runs"]}
    assert "correct regressed" in runs["model-a"]["flags"]
    assert runs["model-a"]["score_correct_change"] < -0.4
    assert "regressed" not in runs["b"]["flags"]
    assert data["changed"] and all(c["model"] == "model-a" for c in data["changed"])
    assert "Run over run" in invoke("compare", "out/week1.parquet", "out/week2.parquet").stdout


def test_cost_per_row_and_unknown_price(start_gateway: Callable[..., GatewayThread]) -> None:
    """cost_usd = tokens x price; a model without a price gets null and a warning, not $0."""
    gw = start_gateway()
    make_prompts(Path("prompts.parquet"), 5)
    write_job(Path("job.yaml"), job_dict(gw.url, prices={"model-a": {"input": 2.0, "output": 8.0}}))
    result = invoke("run", "job.yaml")
    assert "no price for b" in result.stderr
    frame = pl.read_parquet("out/results.parquet")
    a = frame.filter(pl.col("model") == "model-a")
    expected = (a["prompt_tokens"] * 2.0 + a["completion_tokens"] * 8.0) / 1_000_000
    assert a["cost_usd"].to_list() == pytest.approx(expected.to_list())
    assert frame.filter(pl.col("model") == "b")["cost_usd"].null_count() == 5


def test_budget_stops_sending(start_gateway: Callable[..., GatewayThread]) -> None:
    """limits.budget_usd stops sending when reached, and the summary says so."""
    gw = start_gateway()
    make_prompts(Path("prompts.parquet"), 200)
    write_job(
        Path("job.yaml"),
        job_dict(
            gw.url,
            models=["model-a"],
            prices={"model-a": {"input": 1000.0, "output": 1000.0}},
            limits={"concurrency": 2, "budget_usd": 0.1},
        ),
    )
    result = invoke("run", "job.yaml")
    assert result.exit_code == 1
    assert "the budget of $0.1 was reached" in result.stderr
    assert gw.gateway.stats.requests < 20


def test_judge_scores_and_resumes(start_gateway: Callable[..., GatewayThread]) -> None:
    """A judge grades every ok answer; a rerun sends no main and no judge request."""
    gw = start_gateway(accuracy={"model-a": 1.0, "model-b": 0.0})
    make_prompts(Path("prompts.parquet"), 8)
    scores = [
        *SCORES,
        {"name": "quality", "grader": "judge", "model": "judge-model", "rubric": RUBRIC},
    ]
    write_job(Path("job.yaml"), job_dict(gw.url, scores=scores))
    result = invoke("run", "job.yaml")
    assert result.exit_code == 0, result.output
    assert gw.gateway.stats.by_model["judge-model"] == 16
    frame = pl.read_parquet("out/results.parquet")
    assert frame["score_quality"].null_count() == 0
    assert frame.filter(pl.col("model") == "model-a")["score_quality"].to_list() == [9.0] * 8
    assert frame.filter(pl.col("model") == "b")["score_quality"].to_list() == [2.0] * 8
    assert frame["score_quality_reason"].null_count() == 0
    sent = gw.gateway.stats.requests
    assert invoke("run", "job.yaml").exit_code == 0
    assert gw.gateway.stats.requests == sent
    assert pl.read_parquet("out/results.parquet")["score_quality"].null_count() == 0
    assert invoke("run", "job.yaml", "--fresh").exit_code == 0
    assert gw.gateway.stats.by_model["judge-model"] == 32  # --fresh grades again too


def test_score_command_on_existing_results(start_gateway: Callable[..., GatewayThread]) -> None:
    """batchrun score adds the job's scores to a results file made without them."""
    gw = start_gateway()
    make_prompts(Path("prompts.parquet"), 4)
    write_job(Path("job.yaml"), job_dict(gw.url))
    assert invoke("run", "job.yaml").exit_code == 0
    assert "score_correct" not in pl.read_parquet("out/results.parquet").columns
    write_job(Path("job.yaml"), job_dict(gw.url, scores=SCORES))
    result = invoke("score", "job.yaml")
    assert result.exit_code == 0 and "scored 8 rows" in result.stdout
    assert pl.read_parquet("out/results.parquet")["score_correct"].to_list() == [1.0] * 8


def test_compare_refuses_foreign_files() -> None:
    """A file that is not batchrun results is one clear error."""
    pl.DataFrame({"x": [1]}).write_parquet("other.parquet")
    result = invoke("compare", "other.parquet")
    assert result.exit_code == 2 and "not a batchrun results file" in result.stderr


def test_report_renders_in_chromium(
    start_gateway: Callable[..., GatewayThread], tmp_path: Path
) -> None:
    """The report is one file with no network references; Chromium renders it without
    console errors, its script runs, and a screenshot is saved."""
    chromium = chromium_or_skip()
    scored_run(start_gateway, {"model-a": 0.95, "model-b": 0.9}, "out/week1.parquet")
    scored_run(start_gateway, {"model-a": 0.5, "model-b": 0.9}, "out/week2.parquet")
    result = invoke("report", "out/week1.parquet", "out/week2.parquet", "-o", "report.html")
    assert result.exit_code == 0
    page = Path("report.html").read_text()
    for section in (
        "Summary",
        "Latency per model",
        "Cost and score",
        "Pairwise",
        "Run over run",
        "Prompts side by side",
    ):
        assert section in page
    assert "http://" not in page and "https://" not in page
    assert "correct regressed" in page
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            f"file://{Path('report.html').resolve()}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 'data-ready="yes"' in dom.stdout
    console_errors = [
        line
        for line in dom.stderr.splitlines()
        if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)
    ]
    assert console_errors == []
    folder = Path(os.environ.get("BATCHRUN_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "report.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1400,2400",
            f"--screenshot={shot}",
            f"file://{Path('report.html').resolve()}",
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000


def test_unwritable_outputs_are_one_line(start_gateway: Callable[..., GatewayThread]) -> None:
    """A report, a wide table or scores that cannot be written: one line, exit 2, no traceback.

    The wide table and the scores meet a real "no space left" (a link to /dev/full).
    """
    import os

    scored_run(start_gateway, {"model-a": 1.0, "model-b": 0.5}, "out/r.parquet", rows=4)
    before = pl.read_parquet("out/r.parquet")
    failures = []
    failures.append(invoke("report", "out/r.parquet", "-o", "missing/report.html"))
    Path("full.parquet").symlink_to("/dev/full")
    failures.append(invoke("compare", "out/r.parquet", "--wide", "full.parquet"))
    Path(f"out/.r.parquet.{os.getpid()}.tmp").symlink_to("/dev/full")
    failures.append(invoke("score", "job.yaml"))
    paths = ["missing/report.html", "full.parquet", "out/r.parquet"]
    for result, path in zip(failures, paths, strict=True):
        assert result.exit_code == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"batchrun: error: cannot write {path}: ")
        assert "Traceback" not in result.output
    assert pl.read_parquet("out/r.parquet").equals(before)  # the results are untouched
