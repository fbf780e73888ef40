"""What a person sees of a run: messages, progress, the plan and the closing summary.

``Console`` is the run's ``Ui`` on stderr (stdout is kept for tables and
``--json``). ``show_report`` and ``report_json`` print a finished run;
``show_plan`` prints what ``--dry-run`` and ``validate`` promise.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import click

from batchrun.prepare import Prepared
from batchrun.progress import BarProgress, LineProgress, Progress, QuietProgress
from batchrun.redact import redact
from batchrun.run_report import Ending, RunReport
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
    """The one channel for what a person reads, on stderr.

    On a terminal, messages print above a live bar. Elsewhere (cron, logs)
    every line starts with the UTC time (ISO 8601) and the run id, so the
    runs in one log can be told apart.
    """

    def __init__(self, *, quiet: bool, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.run_id: str | None = None
        self._bar: BarProgress | None = None

    def line(self, text: str) -> None:
        """Print one line: above the bar if one is live, stamped when not on a terminal.

        Every line passes through ``redact`` first: no secret the process
        holds reaches a terminal or a log.
        """
        text = redact(text)
        if self._bar is not None:
            self._bar.write(text)
            return
        if not self.terminal:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            text = f"{stamp} {self.run_id} {text}" if self.run_id else f"{stamp} {text}"
        self.stream.write(text + "\n")
        self.stream.flush()

    def notify(self, message: str) -> None:
        """One message, prefixed ``batchrun:``."""
        self.line(f"batchrun: {message}")

    def begin(self, run_id: str, description: str) -> None:
        """A run starts: its id stamps every later line; off a terminal, say so."""
        self.run_id = run_id
        if not self.terminal:
            self.line(f"batchrun: run {run_id} started: {description}")

    def progress(self, total: int, label: str) -> Progress:
        """A bar on a terminal, periodic lines otherwise; nothing when there is nothing to do."""
        if self.quiet or total == 0:
            return QuietProgress()
        if self.terminal:
            bar = _ClosingBar(total, self.stream, label, self)
            self._bar = bar
            return bar
        return LineProgress(total, self.line, label=label)


class _ClosingBar(BarProgress):
    """A bar that tells its console when it is gone, so lines print plainly again."""

    def __init__(self, total: int, stream: TextIO, label: str, console: Console) -> None:
        super().__init__(total, stream, label)
        self._console = console

    def close(self) -> None:
        """Finish the bar and hand the terminal back to plain lines."""
        super().close()
        self._console._bar = None


def print_report(report: RunReport, console: Console, *, as_json: bool) -> None:
    """The end of a run: the JSON object on stdout, or the summary for people."""
    if not as_json:
        show_report(report, console)
        return
    from batchrun.manifest import manifest_path

    click.echo(report_json(report, str(manifest_path(report.output))))
    closing = report.closing_line()
    if closing is not None:
        console.line(closing)


def show_report(report: RunReport, console: Console) -> None:
    """The summary table on stdout; counts, errors, cost and the exit on stderr."""
    if report.sent == 0 and report.ending is Ending.FINISHED and not report.errors:
        console.line(
            f"batchrun: nothing to send: {report.skipped:,} already done; results in "
            f"{report.output} ({report.state.rows:,} rows); exit {report.exit_code} "
            f"({report.exit_reason})"
        )
        closing = report.closing_line()
        if closing is not None:
            console.line(closing)
        return
    if report.models:
        click.echo(format_table(report.models, SUMMARY_COLUMNS))
    for row in report.models:
        if row.get("stopped"):
            console.line(f"model {row['model']} was stopped: {row['stopped']}")
    console.line(
        f"{report.sent:,} requests this run ({report.failed:,} failed), "
        f"{report.skipped:,} already done; "
        f"results in {report.output} ({report.state.rows:,} rows)"
    )
    if report.share_wait_s:
        console.line(
            f"limits.share: Redis was unreachable; sending waited {report.share_wait_s:.1f} s"
        )
    for kind, error in sorted(report.errors.items(), key=lambda item: -item[1]["count"]):
        console.line(
            f"  {error['count']:,} x {kind} (e.g. {error['model']}: {_excerpt(error['example'])})"
        )
    for model, scores in report.scores.items():
        means = ", ".join(
            f"{name} {score['mean']:.3g} (n {score['n']:,})"
            for name, score in scores.items()
            if score["mean"] is not None
        )
        if means:
            console.line(f"scores of {model}: {means}")
    for judge in report.judge_lines():
        console.line(
            f"{judge['judge']}: {judge['requests']:,} requests this run "
            f"({judge['failed']:,} failed), cost {_money(judge['cost_usd'])}"
        )
    console.line(
        f"cost {_money(report.cost_usd)}"
        + (f" + judges {_money(report.judge_cost_usd)}" if report.judges else "")
        + f"; {report.elapsed_s:,.1f} s; exit {report.exit_code} ({report.exit_reason})"
    )
    closing = report.closing_line()
    if closing is not None:
        console.line(closing)


def _excerpt(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _money(value: float | None) -> str:
    from batchrun.display import money

    return "unpriced" if value is None else money(value)


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
        "elapsed_s": report.elapsed_s,
        "cost_usd": report.cost_usd,
        "judge_cost_usd": report.judge_cost_usd,
        "total_cost_usd": report.total_cost_usd,
        "manifest": manifest,
        "models": report.models,
        "judges": report.judge_lines(),
        "errors": report.errors,
        "scores": report.scores,
        "exit_reason": report.exit_reason,
        "share_wait_s": report.share_wait_s,
    }
    return redact(json.dumps(payload, default=str, indent=2))


def show_plan(prepared: Prepared) -> None:
    """The plan of a checked job: requests (and those already done), tokens, cost, judges."""
    from batchrun.estimate import estimated_cost, judge_estimates, pending_by_model
    from batchrun.formats import FORMATS

    plan = prepared.plan
    job = prepared.job
    samples = job.samples
    todo = pending_by_model(prepared)
    to_send = sum(todo.values())
    click.echo(f"job {job.name} ({prepared.loaded.path}): job file, data and templates check out")
    click.echo(
        f"plan: {plan.rows:,} rows x {len(plan.models)} models x {samples} samples = "
        f"{plan.total:,} requests; {plan.total - to_send:,} already done, {to_send:,} to send"
    )
    click.echo(f"estimated input tokens: {plan.estimated_input_tokens():,}")
    uncapped = [
        m.name for m in plan.models if not m.max_output_tokens and FORMATS[m.api].token_output
    ]
    max_out = sum(m.max_output_tokens * todo.get(m.name, 0) for m in plan.models)
    if uncapped:
        click.echo(
            f"maximum output tokens: not capped for {', '.join(uncapped)} "
            "(set params.max_tokens to cap it)"
        )
    else:
        click.echo(f"maximum output tokens: {max_out:,}")
    low, high = estimated_cost(prepared, todo)
    unpriced = prepared.prices.unpriced(job.models)
    if low is not None:
        click.echo(f"estimated cost: {_cost_range(low, high)}, for the {to_send:,} to send")
    if unpriced:
        click.echo(f"no price for: {', '.join(unpriced)} (add them under prices:)")
    for line in batch_plan_lines(prepared):
        click.echo(line)
    for judge in judge_estimates(prepared):
        cost = "no price" if judge.low is None else _cost_range(judge.low, judge.high)
        click.echo(
            f"judge {judge.name} ({judge.model}): up to {judge.requests:,} requests, one per "
            f"ok answer; {judge.judged:,} already judged; cost of the rest: {cost}"
        )
    click.echo(f"output: {prepared.output}")


def batch_plan_lines(prepared: Prepared) -> list[str]:
    """The batch-mode models, and (said once) those priced at half their listed price."""
    from batchrun.batch.mode import is_batch

    job = prepared.job
    batched = [spec for i, spec in enumerate(job.models) if is_batch(job, i)]
    if not batched:
        return []
    lines = [
        f"mode: batch for {', '.join(s.name for s in batched)}: submitted to the provider's "
        "batch API, answered within 24 h; run again (or --wait) to collect"
    ]
    halved = [
        s.name
        for s in batched
        if (price := prepared.prices.price_of(s)) is not None
        and (price.batch_input is None or price.batch_output is None)
    ]
    if halved:
        lines.append(
            f"batch prices: half the listed price for {', '.join(halved)} "
            "(no batch_input/batch_output under prices:)"
        )
    return lines


def _cost_range(low: float, high: float | None) -> str:
    ceiling = "unbounded" if high is None else f"${high:,.4f}"
    return f"${low:,.4f} (input only) to {ceiling} (every output at max)"
