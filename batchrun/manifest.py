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
    models: list[dict[str, Any]],
    by_status: dict[str, int],
    total_rows: int,
    exit_code: int,
    stopped: str | None,
) -> dict[str, Any]:
    """The manifest entry for one run, from its per-model summary."""
    keep = ("requests", "ok", "failed", "prompt_tokens", "completion_tokens", "cost_usd")
    by_model = {row["model"]: {k: row.get(k) for k in keep} for row in models}
    return {
        "run_id": run_id,
        "job": job_name,
        "job_file": str(job_path),
        "job_sha256": job_sha256,
        "batchrun_version": __version__,
        "output": str(output),
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "requests": sum(by_status.values()),
        "by_status": by_status,
        "by_model": by_model,
        "prompt_tokens": _total(models, "prompt_tokens"),
        "completion_tokens": _total(models, "completion_tokens"),
        "cost_usd": _total(models, "cost_usd"),
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


def _total(models: list[dict[str, Any]], key: str) -> float | int | None:
    values = [row[key] for row in models if row.get(key) is not None]
    return sum(values) if values else None
