"""A job's judges, run after it: one judge score is a job of its own over the ok answers.

``run_judges`` promises each judge score run to completion (or until a
signal) as its own ``execute``, under its own lock and output
(``NAME.judge-<score>.parquet``), its progress labelled ``judge <score>``;
the main run then joins their scores on its one compaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batchrun.config import LoadedJob
from batchrun.prepare import Prepared
from batchrun.progress import Progress
from batchrun.run import Run, RunOptions, Ui, execute
from batchrun.run_report import Ending, RunReport


async def run_judges(run: Run, reports: list[RunReport], judged: dict[str, Path]) -> None:
    """Run each judge score over the ok answers (as jobs of their own, one after another)."""
    prepared = run.prepared
    job = prepared.job
    if not any(s.grader == "judge" for s in job.scores):
        return  # the ok answers are read back only for a judge to grade
    from batchrun.compaction import current_ok
    from batchrun.judge import judge_output, judge_plan

    answers = current_ok(prepared.output, prepared.plan.table)
    for spec in (s for s in job.scores if s.grader == "judge"):
        plan = judge_plan(job, spec, answers, prepared.output)
        if plan is None:
            continue
        judge = Prepared(
            loaded=LoadedJob(
                job=plan.job, path=prepared.loaded.path, sha256=prepared.loaded.sha256
            ),
            plan=plan,
            output=judge_output(prepared.output, spec),
            api_key=prepared.api_key,
            base_url=prepared.base_url,
            prices=prepared.prices,
        )
        options = RunOptions(
            retry_errors=run.options.retry_errors,
            fresh=run.options.fresh,
            grace_s=run.options.grace_s,
        )
        report = await execute(judge, options, _Labelled(run.ui, f"judge {spec.name}"))
        reports.append(report)
        judged[spec.name] = judge.output
        if report.sent:
            run.ui.notify(
                f"judge {spec.name} ({spec.model}): {report.sent:,} answers graded this run, "
                f"{report.state.rows:,} in all"
            )
        if report.ending is Ending.INTERRUPTED:
            return


@dataclass
class _Labelled:
    """A ui whose progress displays carry a fixed label."""

    inner: Ui
    label: str

    def notify(self, message: str) -> None:
        self.inner.notify(message)

    def progress(self, total: int, label: str) -> Progress:
        return self.inner.progress(total, self.label)

    def begin(self, run_id: str, description: str) -> None:
        """A judge's run keeps the main run's id in the log."""
