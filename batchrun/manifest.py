"""The run manifest: a JSON file beside each output saying what each run did.

``write_manifest`` promises an atomically replaced
``<output>.manifest.json`` holding the latest run in full (run id, job file
hash, batchrun version, times, counts by status and model, tokens, cost,
exit code) and a short history of the runs before it. It never holds a key.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from batchrun import __version__

HISTORY = 100


def manifest_path(output: Path) -> Path:
    """Where the manifest of ``output`` lives."""
    return output.with_name(output.name + ".manifest.json")


def describe_run(
    *,
    run_id: str,
    job_name: str,
    job_path: Path,
    job_sha256: str,
    output: Path,
    started: float,
    finished: float,
    this_run: pl.DataFrame,
    total_rows: int,
    exit_code: int,
    stopped: str | None,
) -> dict[str, Any]:
    """The manifest entry for one run."""
    by_status = dict(this_run.group_by("status").len().iter_rows()) if this_run.height else {}
    by_model: dict[str, dict[str, Any]] = {}
    if this_run.height:
        grouped = this_run.group_by("model").agg(
            pl.len().alias("requests"),
            (pl.col("status") == "ok").sum().alias("ok"),
            (pl.col("status") != "ok").sum().alias("failed"),
            pl.col("prompt_tokens").sum().alias("prompt_tokens"),
            pl.col("completion_tokens").sum().alias("completion_tokens"),
            pl.col("cost_usd").sum().alias("cost_usd"),
        )
        by_model = {row.pop("model"): row for row in grouped.to_dicts()}
    return {
        "run_id": run_id,
        "job": job_name,
        "job_file": str(job_path),
        "job_sha256": job_sha256,
        "batchrun_version": __version__,
        "output": str(output),
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "requests": this_run.height,
        "by_status": by_status,
        "by_model": by_model,
        "prompt_tokens": _sum(this_run, "prompt_tokens"),
        "completion_tokens": _sum(this_run, "completion_tokens"),
        "cost_usd": _sum(this_run, "cost_usd"),
        "rows_in_output": total_rows,
        "stopped": stopped,
        "exit_code": exit_code,
    }


def write_manifest(output: Path, entry: dict[str, Any]) -> Path:
    """Write ``entry`` as the latest run, keeping earlier runs as history."""
    path = manifest_path(output)
    history: list[dict[str, Any]] = []
    try:
        previous = json.loads(path.read_text())
        history = previous.get("history", [])
        latest = previous.get("latest")
        if isinstance(latest, dict):
            history.append(
                {
                    k: latest.get(k)
                    for k in (
                        "run_id",
                        "started_at",
                        "finished_at",
                        "requests",
                        "by_status",
                        "exit_code",
                    )
                }
            )
    except (OSError, ValueError, AttributeError):
        history = []
    document = {"latest": entry, "history": history[-HISTORY:]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2, default=str))
    tmp.replace(path)
    return path


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sum(frame: pl.DataFrame, column: str) -> float | int | None:
    if frame.height == 0 or frame[column].null_count() == frame.height:
        return None
    value = frame[column].sum()
    return value if isinstance(value, int | float) else None
