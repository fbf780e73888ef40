"""What compaction does to each batch of the output, so the output is written once a run.

``output_finisher`` promises one function that, batch by batch, drops the
rows of superseded settings, applies the per-row scores, and joins every
judge's scores, requests and cost by request key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl

from batchrun.config import ScoreSpec


def output_finisher(
    scores: list[ScoreSpec], judged: dict[str, Path] | None, dropped: set[str]
) -> Callable[[pl.DataFrame], pl.DataFrame] | None:
    """What compaction does to each batch: drop superseded rows, score, join judge scores."""
    graded = [spec for spec in scores if spec.grader != "judge"]
    if not graded and not judged and not dropped:
        return None
    gone = pl.Series(sorted(dropped), dtype=pl.String)
    from batchrun.judge import judgement_table, total_judging
    from batchrun.scoring import apply_scores

    found = judged or {}
    tables = [
        judgement_table(found[spec.name], spec)
        for spec in scores
        if spec.grader == "judge" and spec.name in found
    ]

    def finish(batch: pl.DataFrame) -> pl.DataFrame:
        if len(gone):
            batch = batch.filter(~pl.col("request_key").is_in(gone.implode()))
        if graded:
            batch = apply_scores(batch, graded)
        for index, table in enumerate(tables):
            table = table.rename(
                {c: f"{c}_{index}" for c in table.columns if c.startswith("__judge")}
            )
            batch = batch.drop(
                [c for c in table.columns if c != "request_key" and c in batch.columns]
            ).join(table, on="request_key", how="left")
        return total_judging(batch, len(tables)) if tables else batch

    return finish


def score_means(output: Path) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Per model, the mean and count of every score column of ``output`` (nulls left out)."""
    columns = [
        name
        for name, dtype in pl.read_parquet_schema(output).items()
        if name.startswith("score_") and dtype.is_numeric()
    ]
    if not columns:
        return {}
    frame = (
        pl.scan_parquet(output)
        .group_by("model")
        .agg(
            *(pl.col(c).mean().alias(f"{c}\x00mean") for c in columns),
            *(pl.col(c).count().alias(f"{c}\x00n") for c in columns),
        )
        .sort("model")
        .collect()
    )
    return {
        row["model"]: {
            c.removeprefix("score_"): {"mean": row[f"{c}\x00mean"], "n": row[f"{c}\x00n"]}
            for c in columns
        }
        for row in frame.iter_rows(named=True)
    }


# Graders whose score is better when lower (an error rate); compare and report read the
# names from the results file's metadata under this key.
LOWER_IS_BETTER_GRADERS = frozenset({"wer"})
LOWER_IS_BETTER_KEY = "batchrun.lower_is_better"


def file_metadata(scores: list[ScoreSpec]) -> dict[str, str] | None:
    """The results file's key-value metadata: which scores are better when lower."""
    lower = sorted(spec.name for spec in scores if spec.grader in LOWER_IS_BETTER_GRADERS)
    return {LOWER_IS_BETTER_KEY: json.dumps(lower)} if lower else None
