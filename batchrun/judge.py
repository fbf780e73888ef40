"""Judge scores: a judge model on the same gateway grades every ok response.

Each ``judge`` score becomes a job of its own, run by the same ``execute``
as the main job (same limits, retries, parts and resume): one request per
ok result of the main output, the rubric rendered with that result's
``prompt``, ``response`` and input columns, written to
``<output>.judge-<name>.parquet``. Its request keys hash what is sent, so a
rerun never asks the judge twice about the same answer. ``judgement_table``
gives ``score_<name>`` and ``score_<name>_reason`` by request key, which the
main output's compaction joins in on its one pass.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from batchrun.config import (
    InputSpec,
    Job,
    ModelSpec,
    OutputSpec,
    PromptSpec,
    ScoreSpec,
)
from batchrun.dataset import PROMPT_ID
from batchrun.errors import JobError
from batchrun.plan import Plan, build_plan
from batchrun.scoring import parse_judgement, score_column
from batchrun.store import RESULT_SCHEMA
from batchrun.templates import compile_prompt

JUDGE_PARAMS = {"temperature": 0, "max_tokens": 300}
JUDGE_REQUESTS_PART = "__judge_requests"
JUDGE_COST_PART = "__judge_cost_usd"


def judge_output(output: Path, spec: ScoreSpec) -> Path:
    """Where a judge score's requests and answers are kept."""
    return output.with_name(f"{output.stem}.judge-{spec.name}{output.suffix}")


def judge_job(job: Job, spec: ScoreSpec, output: Path) -> Job:
    """The job that asks ``spec.model`` to grade the main job's answers."""
    assert spec.model is not None and spec.rubric is not None
    return job.model_copy(
        update={
            "name": f"{job.name}-judge-{spec.name}",
            "input": InputSpec(path=str(output)),
            "prompt": PromptSpec(user=spec.rubric),
            "models": [ModelSpec(id=spec.model)],
            "params": JUDGE_PARAMS,
            "samples": 1,
            "output": OutputSpec(
                path=str(judge_output(output, spec)),
                flush_every=job.output.flush_every,
                flush_seconds=job.output.flush_seconds,
            ),
            "scores": [],
        }
    )


def judge_plan(job: Job, spec: ScoreSpec, answers: pl.DataFrame, output: Path) -> Plan | None:
    """The judge's plan over ``answers`` (the ok rows of ``output``), or None if none."""
    if answers.height == 0:
        return None
    template = compile_prompt(PromptSpec(user=spec.rubric))
    inputs = [c for c in answers.columns if c not in RESULT_SCHEMA or c == "response"]
    frame = answers.select(
        pl.col("request_key").alias(PROMPT_ID),
        *[c for c in inputs if c != PROMPT_ID],
    )
    try:
        return build_plan(judge_job(job, spec, output), frame, template)
    except JobError as exc:
        raise JobError(str(exc), field=f"scores.{spec.name}.rubric") from None


def check_rubric(spec: ScoreSpec, input_columns: list[str]) -> None:
    """``JobError`` if the rubric uses a variable no result row will have."""
    template = compile_prompt(PromptSpec(user=spec.rubric))
    available = {*input_columns, "prompt", "response", "messages"}
    missing = sorted(template.variables - available)
    if missing:
        raise JobError(
            f"scores.{spec.name}.rubric: the rubric uses {{{{ {missing[0]} }}}}, which is not "
            f"an input column nor one of prompt, response, messages"
        )


def judgement_table(path: Path, spec: ScoreSpec) -> pl.DataFrame:
    """A judge's score, reason, requests and cost by the main output's request key.

    The requests and cost columns (``__judge_requests``, ``__judge_cost_usd``)
    are summed over every judge by the caller into ``judge_requests`` and
    ``judge_cost_usd``.
    """
    answers = pl.read_parquet(path, columns=[PROMPT_ID, "status", "response", "cost_usd"])
    answers = answers.unique(subset=PROMPT_ID, keep="last")
    low, high = spec.scale
    ok = answers.get_column("status") == "ok"
    parsed = [
        parse_judgement(text, low, high) if good else (None, None)
        for text, good in zip(answers.get_column("response"), ok, strict=True)
    ]
    column = score_column(spec.name)
    return pl.DataFrame(
        {
            "request_key": answers.get_column(PROMPT_ID),
            column: pl.Series([p[0] for p in parsed], dtype=pl.Float64),
            f"{column}_reason": pl.Series([p[1] for p in parsed], dtype=pl.String),
            JUDGE_REQUESTS_PART: pl.Series([1] * answers.height, dtype=pl.Int64),
            JUDGE_COST_PART: answers.get_column("cost_usd").cast(pl.Float64),
        }
    )


def total_judging(frame: pl.DataFrame, parts: int) -> pl.DataFrame:
    """``frame`` with ``judge_requests`` and ``judge_cost_usd`` summed over ``parts`` judges.

    The per-judge columns were joined as ``__judge_requests_<i>`` and
    ``__judge_cost_usd_<i>``; they are dropped. The cost stays null where no
    judge priced the row.
    """
    requests = [f"{JUDGE_REQUESTS_PART}_{i}" for i in range(parts)]
    costs = [f"{JUDGE_COST_PART}_{i}" for i in range(parts)]
    return frame.with_columns(
        pl.sum_horizontal(requests).cast(pl.Int64).alias("judge_requests"),
        pl.when(pl.any_horizontal(pl.col(c).is_not_null() for c in costs))
        .then(pl.sum_horizontal(costs))
        .otherwise(None)
        .cast(pl.Float64)
        .alias("judge_cost_usd"),
    ).drop(requests + costs)
