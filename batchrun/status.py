"""What a job's output holds now, per model, without sending anything.

``job_status`` promises, for each model of the job: rows done, failed (by
error type), not yet sent, and superseded; the last run's id, time and
exit code from the manifest; and the cost so far, judges included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from batchrun.manifest import manifest_path
from batchrun.prepare import Prepared
from batchrun.store import part_files
from batchrun.supersede import sidecar_path


@dataclass
class ModelStatus:
    """One model's rows in the output."""

    model: str
    done: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    unsent: int = 0
    superseded: int = 0
    cost_usd: float = 0.0


@dataclass
class JobStatus:
    """The output of one job as it stands."""

    output: str
    models: list[ModelStatus]
    last_run: dict[str, Any] | None

    @property
    def cost_usd(self) -> float:
        """What every answer in the output cost so far, judges included."""
        return sum(m.cost_usd for m in self.models)


def job_status(prepared: Prepared) -> JobStatus:
    """The status of ``prepared``'s output, per model of the job."""
    output = prepared.output
    rows = _current_rows(output)
    plan = prepared.plan
    present = set(rows.get_column("request_key").to_list()) if rows.height else set()
    found: list[ModelStatus] = []
    superseded = _superseded_counts(output)
    for model in plan.models:
        mine = rows.filter(pl.col("model") == model.name)
        failed = mine.filter(pl.col("status") != "ok")
        cost = mine.select(
            pl.col("cost_usd").fill_null(0).sum() + pl.col("judge_cost_usd").fill_null(0).sum()
        ).item()
        found.append(
            ModelStatus(
                model=model.name,
                done=mine.height - failed.height,
                failed=dict(failed.group_by("error_type").len().sort("error_type").iter_rows()),
                unsent=plan.count(skip=present, models=[model]),
                superseded=superseded.get(model.name, 0),
                cost_usd=float(cost or 0.0),
            )
        )
    return JobStatus(output=str(output), models=found, last_run=_last_run(output))


def _current_rows(output: Any) -> pl.DataFrame:
    """One row per request key across the output and its parts (ok first, then latest)."""
    columns = ["request_key", "model", "status", "error_type", "finished_at", "cost_usd"]
    sources = ([output] if output.exists() else []) + part_files(output)
    if not sources:
        return pl.DataFrame(
            schema={**dict.fromkeys(columns, pl.String), "judge_cost_usd": pl.Float64}
        ).with_columns(pl.col("cost_usd").cast(pl.Float64))
    frames = []
    for source in sources:
        names = pl.read_parquet_schema(source)
        frame = pl.scan_parquet(source).select(columns)
        judge = pl.col("judge_cost_usd") if "judge_cost_usd" in names else pl.lit(None)
        frames.append(frame.with_columns(judge.cast(pl.Float64).alias("judge_cost_usd")))
    return (
        pl.concat(frames, how="vertical_relaxed")
        .with_columns((pl.col("status") == "ok").alias("__ok"))
        .sort("__ok", "finished_at", nulls_last=False)
        .unique(subset="request_key", keep="last")
        .drop("__ok")
        .collect()
    )


def _superseded_counts(output: Any) -> dict[str, int]:
    sidecar = sidecar_path(output)
    if not sidecar.exists():
        return {}
    counts = pl.scan_parquet(sidecar).group_by("model").len().collect()
    return {str(model): int(count) for model, count in counts.iter_rows()}


def _last_run(output: Any) -> dict[str, Any] | None:
    try:
        latest = json.loads(manifest_path(output).read_text()).get("latest")
    except (OSError, ValueError):
        return None
    return latest if isinstance(latest, dict) else None
