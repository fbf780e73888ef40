"""What a person sees of a run: messages, progress, the plan and the closing summary.

``Console`` is the run's ``Ui`` on stderr (stdout is kept for tables and
``--json``). ``show_report`` and ``report_json`` print a finished run;
``show_plan`` prints what ``--dry-run`` and ``validate`` promise.
"""

from __future__ import annotations

import json
from typing import Any

import click

from batchrun.prepare import Prepared
from batchrun.progress import Progress, make_progress
from batchrun.run_report import RunReport
from batchrun.summary import format_table

SUMMARY_COLUMNS = [
    ("model", "model"),
    ("ok", "ok"),
    ("failed", "failed"),
    ("prompt_tokens", "prompt tok"),
    ("completion_tokens", "completion tok"),
    ("latency_p50_s", "p50 s"),
    ("latency_p95_s", "p95 s"),
    ("rate_per_s", "req/s"),
    ("rate_limited", "429s"),
    ("pace_per_min", "pace/min"),
    ("held_by", "held back by"),
    ("limit_used", "of it used"),
]


class Console:
    """Messages and progress on stderr; nothing when ``quiet`` but the messages."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet

    def notify(self, message: str) -> None:
        """One line on stderr, prefixed ``batchrun:``."""
        click.echo(f"batchrun: {message}", err=True)

    def progress(self, total: int, label: str) -> Progress:
        """A bar on a terminal, periodic lines otherwise."""
        return make_progress(total, quiet=self.quiet, label=label)


def show_report(report: RunReport) -> None:
    """The summary table on stdout, then the counts and the closing line on stderr."""
    if report.models:
        click.echo(format_table(report.models, SUMMARY_COLUMNS))
    for row in report.models:
        if row.get("stopped"):
            click.echo(f"model {row['model']} was stopped: {row['stopped']}", err=True)
    click.echo(
        f"{report.sent:,} requests this run ({report.failed:,} failed), "
        f"{report.skipped:,} already done; "
        f"results in {report.output} ({report.state.rows:,} rows)",
        err=True,
    )
    closing = report.closing_line()
    if closing is not None:
        click.echo(closing, err=True)


def report_json(report: RunReport, manifest: str) -> str:
    """The run's summary as one JSON object (a stable format for scripts)."""
    payload: dict[str, Any] = {
        "run_id": report.run_id,
        "output": str(report.output),
        "planned": report.planned,
        "already_done": report.skipped,
        "sent": report.sent,
        "failed": report.failed,
        "exit_code": report.exit_code,
        "manifest": manifest,
        "models": report.models,
    }
    return json.dumps(payload, default=str, indent=2)


def show_plan(prepared: Prepared) -> None:
    """The plan of a checked job: requests, tokens, cost range, output."""
    from batchrun.estimate import estimated_cost

    plan = prepared.plan
    job = prepared.job
    samples = job.samples
    click.echo(f"job {job.name} ({prepared.loaded.path}): job file, data and templates check out")
    click.echo(
        f"plan: {plan.rows:,} rows x {len(plan.models)} models x {samples} samples = "
        f"{plan.total:,} requests"
    )
    click.echo(f"estimated input tokens: {plan.estimated_input_tokens():,}")
    uncapped = [m.name for m in plan.models if not m.max_output_tokens]
    max_out = sum(m.max_output_tokens for m in plan.models) * plan.rows * samples
    if uncapped:
        click.echo(
            f"maximum output tokens: not capped for {', '.join(uncapped)} "
            "(set params.max_tokens to cap it)"
        )
    else:
        click.echo(f"maximum output tokens: {max_out:,}")
    low, high = estimated_cost(prepared)
    unpriced = prepared.prices.unpriced(job.models)
    if low is not None:
        ceiling = "unbounded" if high is None else f"${high:,.4f}"
        click.echo(f"estimated cost: ${low:,.4f} (input only) to {ceiling} (every output at max)")
    if unpriced:
        click.echo(f"no price for: {', '.join(unpriced)} (add them under prices:)")
    click.echo(f"output: {prepared.output}")
