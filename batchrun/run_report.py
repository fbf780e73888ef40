"""How a run ended, in one place: its ending, its exit code, and what to tell the user.

``RunReport`` is built once by the run when it finishes. The command line
asks it for the exit code, the closing lines and the JSON summary; the
manifest asks it for its entry. Nothing else decides how a run ended.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrun.errors import EXIT_FAILURES, EXIT_OK, EXIT_REFUSED, EXIT_SIGINT, EXIT_SIGTERM


class Ending(enum.Enum):
    """Why a run stopped sending."""

    FINISHED = "finished"  # everything that could be sent was
    REFUSED = "refused"  # the gateway refused the key or the account (exit 3)
    INTERRUPTED = "interrupted"  # SIGINT or SIGTERM (exit 130 or 143)
    STORAGE = "storage"  # a results file could not be written (exit 1)
    BUDGET = "budget"  # limits.budget_usd was reached (exit 1)


@dataclass(frozen=True)
class MaxFailures:
    """How many failed rows the output may hold before a run exits 1: a count or a percentage."""

    limit: float = 0.0
    percent: bool = False

    @classmethod
    def parse(cls, text: str) -> MaxFailures | None:
        """``5`` or ``2%``; None when ``text`` is neither."""
        text = text.strip()
        try:
            if text.endswith("%"):
                number = float(text[:-1])
                return cls(number, True) if 0 <= number <= 100 else None
            count = int(text)
        except ValueError:
            return None
        return cls(float(count), False) if count >= 0 else None

    def exceeded(self, failed: int, rows: int) -> bool:
        """Whether ``failed`` of ``rows`` is more than allowed."""
        if self.percent:
            return rows > 0 and failed * 100.0 / rows > self.limit
        return failed > self.limit


@dataclass(frozen=True)
class OutputState:
    """What the output holds after a run: rows, failed rows, and those a rerun keeps."""

    rows: int = 0
    failed: int = 0
    permanent: int = 0  # failed rows a plain rerun keeps (only --retry-errors resends them)

    @property
    def resendable(self) -> int:
        """Failed rows a plain rerun sends again."""
        return self.failed - self.permanent


@dataclass
class RunReport:
    """What a finished (or stopped) run did, and how it ended."""

    run_id: str
    job_name: str
    job_file: Path
    job_sha256: str
    output: Path
    planned: int
    skipped: int
    started: float
    finished: float
    ending: Ending
    tolerance: MaxFailures
    state: OutputState
    by_status: dict[str, int] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    signal: int | None = None
    judges: list[RunReport] = field(default_factory=list)
    # Failures of this run by error type: {"count", "model", "example"}.
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per model, per score column of the output: {"mean", "n"}.
    scores: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # With limits.share: seconds sending waited for an unreachable Redis (None: not shared).
    share_wait_s: float | None = None

    @property
    def sent(self) -> int:
        """Requests that got a row this run."""
        return sum(self.by_status.values())

    @property
    def failed(self) -> int:
        """Rows of this run that failed."""
        return self.sent - self.by_status.get("ok", 0)

    @property
    def cost_usd(self) -> float | None:
        """What this run's answers cost (priced models only); None if none was priced."""
        costs = [row["cost_usd"] for row in self.models if row.get("cost_usd") is not None]
        return sum(costs) if costs else None

    @property
    def judge_cost_usd(self) -> float | None:
        """What the judges' answers cost this run; None if no judge was priced."""
        costs = [judge.cost_usd for judge in self.judges if judge.cost_usd is not None]
        return sum(costs) if costs else None

    @property
    def total_cost_usd(self) -> float | None:
        """The run's and the judges' cost together."""
        parts = [c for c in (self.cost_usd, self.judge_cost_usd) if c is not None]
        return sum(parts) if parts else None

    @property
    def elapsed_s(self) -> float:
        """Seconds from the first request to the last answer of the run."""
        return max(self.finished - self.started, 0.0)

    def judge_lines(self) -> list[dict[str, Any]]:
        """Per judge: its name, requests this run, failures and cost."""
        return [
            {
                "judge": judge.job_name,
                "requests": judge.sent,
                "failed": judge.failed,
                "cost_usd": judge.cost_usd,
                "rows": judge.state.rows,
            }
            for judge in self.judges
        ]

    @property
    def exit_code(self) -> int:
        """0 done; 1 failures above the tolerance, a write failure or the budget; 3; 130; 143."""
        if self.ending is Ending.REFUSED:
            return EXIT_REFUSED
        if self.ending is Ending.INTERRUPTED:
            return EXIT_SIGTERM if self.signal == signal.SIGTERM else EXIT_SIGINT
        if self.ending in (Ending.STORAGE, Ending.BUDGET):
            return EXIT_FAILURES
        if self.tolerance.exceeded(self.state.failed, self.state.rows):
            return EXIT_FAILURES
        return EXIT_OK

    @property
    def stopped(self) -> str | None:
        """Why the run stopped before it was done, for the manifest; None if it was not."""
        if self.ending is Ending.REFUSED:
            return f"refused: {self.reason}"
        if self.ending is Ending.INTERRUPTED:
            return f"signal {self.signal}"
        if self.ending in (Ending.STORAGE, Ending.BUDGET):
            return self.reason
        return None

    @property
    def exit_reason(self) -> str:
        """Why the exit code is what it is, in a few words."""
        if self.ending is not Ending.FINISHED:
            return self.stopped or self.ending.value
        if self.exit_code == EXIT_FAILURES:
            return f"{self.state.failed:,} of {self.state.rows:,} rows failed"
        return "done"

    def closing_line(self) -> str | None:
        """The last line for the user (on stderr): the error or the hint, if any."""
        if self.ending is Ending.REFUSED:
            return f"batchrun: error: the gateway refused the run: {self.reason}"
        if self.ending is Ending.INTERRUPTED:
            return "batchrun: interrupted; finished results are saved, rerun to send the rest"
        if self.ending is Ending.STORAGE:
            return f"batchrun: error: {self.reason}"
        if self.ending is Ending.BUDGET:
            return (
                f"batchrun: stopped sending: {self.reason}; raise limits.budget_usd "
                "and rerun to send the rest"
            )
        if self.exit_code == EXIT_FAILURES:
            return "batchrun: " + self._failure_hint()
        return None

    def _failure_hint(self) -> str:
        state = self.state
        earlier = max(state.failed - self.failed, 0)
        counted = f"{state.failed:,} of {state.rows:,} rows in {self.output} failed"
        if earlier:
            counted += f" ({self.failed:,} this run, {earlier:,} in earlier runs)"
        actions = []
        if state.resendable:
            actions.append(f"a plain rerun sends the {state.resendable:,} transient failures again")
        if state.permanent:
            actions.append(
                f"--retry-errors also resends the {state.permanent:,} the gateway rejected"
            )
        return counted + ("; " + "; ".join(actions) if actions else "")
