"""The run manifest: a JSON file beside each output saying what each run did.

``write_manifest`` promises an atomically replaced and synced
``<output>.manifest.json`` holding the latest run in full (run id, job
name, batchrun version, times, counts by status and model, tokens, cost,
the state of the output, exit code) and a short history of the runs before
it. It never holds a key.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchrun import __version__
from batchrun.redact import redact

if TYPE_CHECKING:
    from batchrun.run_report import RunReport

HISTORY = 100
_HISTORY_KEYS = ("run_id", "started_at", "finished_at", "requests", "by_status", "exit_code")


def manifest_path(output: Path) -> Path:
    """Where the manifest of ``output`` lives."""
    return output.with_name(output.name + ".manifest.json")


def describe_run(report: RunReport) -> dict[str, Any]:
    """The manifest entry for one run."""
    keep = ("requests", "ok", "failed", "prompt_tokens", "completion_tokens", "cost_usd")
    models = report.models
    return {
        "run_id": report.run_id,
        "job": report.job_name,
        "job_file": str(report.job_file),
        "job_sha256": report.job_sha256,
        "batchrun_version": __version__,
        "output": str(report.output),
        "started_at": _iso(report.started),
        "finished_at": _iso(report.finished),
        "requests": report.sent,
        "by_status": report.by_status,
        "by_model": {row["model"]: {k: row.get(k) for k in keep} for row in models},
        "prompt_tokens": _total(models, "prompt_tokens"),
        "completion_tokens": _total(models, "completion_tokens"),
        "cost_usd": _total(models, "cost_usd"),
        "judges": report.judge_lines(),
        "judge_cost_usd": report.judge_cost_usd,
        "total_cost_usd": report.total_cost_usd,
        "rows_in_output": report.state.rows,
        "output_state": {
            "rows": report.state.rows,
            "failed": report.state.failed,
            "failed_permanently": report.state.permanent,
        },
        "stopped": report.stopped,
        "exit_code": report.exit_code,
    }


def write_manifest(report: RunReport) -> Path:
    """Write ``report`` as the latest run of its output, keeping earlier runs as history."""
    path = manifest_path(report.output)
    entry = describe_run(report)
    history: list[dict[str, Any]] = []
    try:
        previous = json.loads(path.read_text())
        history = previous.get("history", [])
        latest = previous.get("latest")
        if isinstance(latest, dict):
            history.append({k: latest.get(k) for k in _HISTORY_KEYS})
    except (OSError, ValueError, AttributeError):
        history = []
    document = {"latest": entry, "history": history[-HISTORY:]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(redact(json.dumps(document, indent=2, default=str)))
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _total(models: list[dict[str, Any]], key: str) -> float | int | None:
    values = [row[key] for row in models if row.get(key) is not None]
    return sum(values) if values else None
