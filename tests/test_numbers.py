"""Issue 13, "numbers you can trust": compare's figures on hand-made results files.

Each test is named after the finding it checks; the files are written here with
Polars, so every expected figure can be worked out from the frame itself.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from conftest import invoke

from batchrun import display
from batchrun.stats import paired_test

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def results(
    outcomes: dict[str, list[float]],
    *,
    samples: int = 1,
    job: str = "demo",
    run_id: str = "run-1",
    cost: float = 0.000329,
    start: datetime = START,
    prompts: list[str] | None = None,
    **extra: Any,
) -> pl.DataFrame:
    """One row per (prompt, model, sample): ``outcomes[model][i]`` is prompt i's score."""
    rows = []
    for model, scores in outcomes.items():
        for i, score in enumerate(scores):
            for sample in range(samples):
                prompt = prompts[i] if prompts else f"p{i:03d}"
                rows.append(
                    {
                        "run_id": run_id,
                        "job": job,
                        "prompt_id": prompt,
                        "model": model,
                        "sample": sample,
                        "request_key": f"{run_id}-{model}-{prompt}-{sample}",
                        "status": "ok",
                        "error_type": None,
                        "latency_s": 0.05 + 0.001 * i,
                        "completion_tokens": 10,
                        "total_tokens": 1200,
                        "cost_usd": cost,
                        "finished_at": start + timedelta(seconds=i),
                        "score_correct": score,
                    }
                )
    frame = pl.DataFrame(rows, schema_overrides={"sample": pl.Int32, "error_type": pl.String})
    return frame.with_columns(**{k: pl.lit(v) for k, v in extra.items()})


def compare_json(*paths: str) -> dict[str, Any]:
    result = invoke("compare", *paths, "--format", "json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


PASS_A = [1.0] * 40 + [1.0] * 7 + [0.0] * 3
PASS_B = [1.0] * 40 + [0.0] * 7 + [1.0] * 0 + [0.0] * 3


def test_finding1_superseded_rows_are_never_counted() -> None:
    """Rows marked superseded (old params) are not counted: 50 requests, not 100."""
    old = results({"a": [0.0] * 50}, run_id="old", cost=1.0).with_columns(superseded=pl.lit(True))
    new = results({"a": PASS_A, "b": PASS_B}, run_id="new").with_columns(superseded=pl.lit(False))
    pl.concat([old, new]).write_parquet("r.parquet")
    data = compare_json("r.parquet")
    a = next(m for m in data["models"] if m["model"] == "a")
    assert a["requests"] == 50 and a["prompts"] == 50
    assert a["cost_usd"] == pytest.approx(50 * 0.000329)
    assert a["score_correct"]["mean"] == pytest.approx(47 / 50)
    assert data["pairwise"][0]["prompts"] == 50


def test_finding1_repeated_rows_keep_the_latest_with_one_warning() -> None:
    """A (prompt, model, sample) twice among current rows: the later finished counts, one line."""
    early = results({"a": [0.0] * 10}, run_id="r1")
    late = results({"a": [1.0] * 10}, run_id="r2", start=START + timedelta(hours=1))
    pl.concat([late, early]).write_parquet("r.parquet")
    result = invoke("compare", "r.parquet", "--format", "json")
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "batchrun: warning: r.parquet: 10 rows repeat a (prompt, model, sample) already there; "
        "counted only the latest finished of each"
    ]
    model = json.loads(result.stdout)["models"][0]
    assert model["requests"] == 10 and model["score_correct"]["mean"] == 1.0


def test_finding2_samples_are_folded_per_prompt() -> None:
    """Three identical samples per prompt give the p-value and interval of one sample each."""
    results({"a": PASS_A, "b": PASS_B}, samples=1).write_parquet("one.parquet")
    results({"a": PASS_A, "b": PASS_B}, samples=3).write_parquet("three.parquet")
    one, three = compare_json("one.parquet"), compare_json("three.parquet")
    assert three["samples"] == 3 and three["prompts"] == 50
    assert three["pairwise"][0]["test"] == one["pairwise"][0]["test"]
    assert three["pairwise"][0]["prompts"] == 50
    assert one["pairwise"][0]["test"]["p_value"] == pytest.approx(2 * 1 / 128)
    assert three["models"][0]["score_correct"] == one["models"][0]["score_correct"]
    assert three["models"][0]["score_correct"]["n"] == 50
    table = invoke("compare", "three.parquet").stdout
    assert "n = 50 prompts, 3 samples each" in table


def test_finding2_majority_vote_per_prompt() -> None:
    """Pass/fail samples 1,1,0 count as a pass for that prompt; 1,0 (a tie) as 0.5."""
    frame = results({"a": [1.0] * 6}, samples=3)
    frame = frame.with_columns(
        score_correct=pl.when((pl.col("sample") == 2) | (pl.col("prompt_id") == "p000"))
        .then(0.0)
        .otherwise(1.0)
    )
    frame.write_parquet("r.parquet")
    interval = compare_json("r.parquet")["models"][0]["score_correct"]
    assert interval["mean"] == pytest.approx(5 / 6) and interval["n"] == 6


def test_finding2_too_few_prompts_say_so_instead_of_a_p_value() -> None:
    """Three discordant prompts: no p-value, and the reason in its place."""
    results({"a": [1.0] * 20 + [1.0] * 3, "b": [1.0] * 20 + [0.0] * 3}).write_parquet("r.parquet")
    test = compare_json("r.parquet")["pairwise"][0]["test"]
    assert test["p_value"] is None and test["significant"] is False
    assert test["untested"] == "too few discordant prompts for a test (3 < 5)"
    assert "no test: too few discordant prompts" in invoke("compare", "r.parquet").stdout
    assert paired_test([1.0, 0.0], [0.0, 1.0]).untested == "too few prompts for a test (2 < 5)"


def test_finding6_different_jobs_are_refused() -> None:
    """Runs of different jobs, or of different prompt sets: exit 2, one line naming both files."""
    results({"a": [1.0] * 50}).write_parquet("w1.parquet")
    results({"a": [1.0] * 50}, job="eval", run_id="r2").write_parquet("w2.parquet")
    results({"a": [1.0] * 300}, run_id="r3").write_parquet("w3.parquet")
    job = invoke("compare", "w1.parquet", "w2.parquet")
    assert job.exit_code == 2
    assert job.stderr.strip().splitlines() == [
        "batchrun: error: w1.parquet and w2.parquet are not runs of one job: job demo vs eval; "
        "pass --allow-different to compare them anyway"
    ]
    prompts = invoke("compare", "w1.parquet", "w3.parquet")
    assert prompts.exit_code == 2
    assert "prompt sets differ (50 vs 300 prompts, 250 in only one)" in prompts.stderr
    assert invoke("report", "w1.parquet", "w2.parquet").exit_code == 2
    assert invoke("compare", "w1.parquet", "w3.parquet", "--allow-different").exit_code == 0


def test_finding6_shards_of_one_run_are_one_run() -> None:
    """Files --shard wrote for one run, or sharing a run id, are one run, not runs over time."""
    whole = results({"a": PASS_A, "b": PASS_B})
    prompts = sorted(whole.get_column("prompt_id").unique().to_list())
    for i in range(2):
        part = whole.filter(pl.col("prompt_id").is_in(prompts[i::2]))
        part.with_columns(run_id=pl.lit(f"shard-run-{i}")).write_parquet(
            f"r.shard-{i}-of-2.parquet"
        )
        part.write_parquet(f"same-run-{i}.parquet")
    for files in (("r.shard-0-of-2.parquet", "r.shard-1-of-2.parquet"),
                  ("same-run-0.parquet", "same-run-1.parquet")):  # fmt: skip
        data = compare_json(*files)
        assert data["runs"] == [] and len(data["run_finished_at"]) == 1
        assert data["models"][0]["requests"] == 50 and data["prompts"] == 50
    assert compare_json("r.shard-0-of-2.parquet", "r.shard-1-of-2.parquet")["latest"] == (
        "r.shards-of-2"
    )


def test_finding6_changes_carry_their_unit() -> None:
    """Run over run: latency and cost changes read +0.08 s (+164%) and +$0.0300, not 1.638."""
    results({"a": PASS_A}, cost=0.0006).write_parquet("w1.parquet")
    later = START + timedelta(days=7)
    slower = results({"a": PASS_A}, run_id="r2", cost=0.0012, start=later).with_columns(
        latency_s=pl.col("latency_s") * 2.64
    )
    slower.write_parquet("w2.parquet")
    run = compare_json("w1.parquet", "w2.parquet")["runs"][0]
    assert run["latency_p50_change_pct"] == pytest.approx(164.0)
    assert run["cost_change_usd"] == pytest.approx(50 * 0.0006)
    assert set(run["flags"]) == {"slower", "costlier"}
    assert run["score_correct_p"] is None
    assert run["score_correct_untested"] == "too few discordant prompts for a test (0 < 5)"
    table = invoke("compare", "w1.parquet", "w2.parquet").stdout
    p50 = 0.05 + 0.001 * 24.5
    assert f"+{display.sig(p50 * 1.64)} s (+164%)" in table
    assert "+$0.0300 (+100%)" in table


def test_finding7_json_has_numbers_and_null() -> None:
    """--format json: numbers as numbers, null for missing, never "-"; every table present."""
    frame = results({"a": PASS_A, "b": PASS_B}).with_columns(cost_usd=pl.lit(None, pl.Float64))
    frame.write_parquet("r.parquet")
    data = compare_json("r.parquet")
    assert {"models", "pairwise", "runs", "history", "changed", "warnings"} <= set(data)
    model = data["models"][0]
    assert model["errors"] == {} and model["cost_usd"] is None and model["ttft_p50_s"] is None
    assert isinstance(model["ok_rate"], float) and isinstance(model["requests"], int)
    assert '"-"' not in json.dumps(data)


def test_finding7_csv_is_one_table_per_file() -> None:
    """--format csv --table models|pairwise|runs: one header, numbers, empty for missing,
    intervals as low and high columns; Polars reads each back with numeric dtypes."""
    results({"a": PASS_A, "b": PASS_B}).write_parquet("w1.parquet")
    results({"a": PASS_A, "b": PASS_B}, run_id="r2", cost=0.001).write_parquet("w2.parquet")
    tables = {}
    for table in ("models", "pairwise", "runs"):
        text = invoke("compare", "w1.parquet", "w2.parquet", "--format", "csv", "--table", table)
        assert text.exit_code == 0
        tables[table] = pl.read_csv(io.StringIO(text.stdout))
    models = tables["models"]
    assert models.height == 2 and models["model"].to_list() == ["a", "b"]
    assert models.schema["score_correct_low"] == pl.Float64
    assert models.schema["requests"] == pl.Int64 and models["ttft_p50_s"].null_count() == 2
    assert tables["pairwise"].schema["p_value"] == pl.Float64
    assert tables["runs"].schema["latency_p50_change_s"] == pl.Float64
    rows = list(csv.reader(io.StringIO(invoke("compare", "w2.parquet", "--format", "csv").stdout)))
    assert "-" not in [cell for row in rows for cell in row]


def test_finding8_significant_figures() -> None:
    """$0.000329 stays $0.000329; ok % reads 100%, not 100.000; thousands separators."""
    frame = results({"a": [1.0] * 3}, cost=0.000329 / 3).with_columns(total_tokens=pl.lit(12_000))
    frame.write_parquet("r.parquet")
    for fmt in ("table", "markdown"):
        text = invoke("compare", "r.parquet", "--format", fmt).stdout
        assert "$0.000329" in text and "$0.000" + " " not in text
        assert "100%" in text and "100.000" not in text
        assert "36,000" in text
    assert display.money(0.000329) == "$0.000329"
    assert display.seconds(1234.56) == "1,235 s"
    assert display.count(1234567) == "1,234,567"
    assert display.percent(99.96) == "99.96%" and display.percent(100.0) == "100%"


def test_finding5_judge_cost_is_shown() -> None:
    """A judge_cost_usd column: compare shows the judge's requests and cost beside the run's."""
    frame = results({"a": PASS_A, "b": PASS_B}).with_columns(
        judge_cost_usd=pl.when(pl.col("prompt_id") == "p000")
        .then(None)
        .otherwise(pl.lit(0.0021))
        .cast(pl.Float64)
    )
    frame.write_parquet("r.parquet")
    model = compare_json("r.parquet")["models"][0]
    assert model["judge_requests"] == 49
    assert model["judge_cost_usd"] == pytest.approx(49 * 0.0021)
    table = invoke("compare", "r.parquet").stdout
    assert "judge cost" in table and display.money(49 * 0.0021) in table


def test_finding5_judge_files_beside_results() -> None:
    """Without the column, the sibling <stem>.judge-<name>.parquet rows are joined by key."""
    frame = results({"a": PASS_A})
    frame.write_parquet("r.parquet")
    judge = frame.select(
        pl.col("request_key").alias("prompt_id"),
        pl.lit("judge").alias("model"),
        pl.lit(0, pl.Int32).alias("sample"),
        pl.lit("ok").alias("status"),
        pl.lit(0.001).alias("cost_usd"),
    )
    judge.write_parquet("r.judge-quality.parquet")
    model = compare_json("r.parquet")["models"][0]
    assert model["judge_requests"] == 50 and model["judge_cost_usd"] == pytest.approx(0.05)


def test_one_quantile_for_every_figure() -> None:
    """compare's p50/p95 are stats.quantile's, which match Polars' linear quantile."""
    frame = results({"a": PASS_A})
    frame.write_parquet("r.parquet")
    model = compare_json("r.parquet")["models"][0]
    latency = frame.get_column("latency_s")
    assert model["latency_p50_s"] == pytest.approx(latency.quantile(0.5, "linear"))
    assert model["latency_p95_s"] == pytest.approx(latency.quantile(0.95, "linear"))
