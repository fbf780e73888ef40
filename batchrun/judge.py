"""Judge scores: a judge model on the same gateway grades every ok response.

Each ``judge`` score becomes a job of its own, run by the same ``execute``
as the main job (same limits, retries, parts and resume): one request per
ok result of the main output, the rubric rendered with that result's
``prompt``, ``response`` and input columns, written to
``<output>.judge-<name>.parquet``. Its request keys hash what is sent, so a
rerun never asks the judge twice about the same answer. ``merge_judgements``
then puts ``score_<name>`` and ``score_<name>_reason`` into the main output.
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
from batchrun.store import RESULT_SCHEMA, write_parquet_atomic
from batchrun.templates import compile_prompt

JUDGE_PARAMS = {"temperature": 0, "max_tokens": 300}


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


def judge_plan(job: Job, spec: ScoreSpec, output: Path) -> Plan | None:
    """The judge's plan over the ok rows of ``output``, or None when there is nothing to judge."""
    if not output.exists():
        return None
    results = pl.read_parquet(output).filter(pl.col("status") == "ok")
    if results.height == 0:
        return None
    template = compile_prompt(PromptSpec(user=spec.rubric))
    inputs = [c for c in results.columns if c not in RESULT_SCHEMA or c == "response"]
    frame = results.select(
        pl.col("request_key").alias(PROMPT_ID),
        *[c for c in inputs if c != PROMPT_ID],
    )
    try:
        return build_plan(judge_job(job, spec, output), frame, template)
    except JobError as exc:
        raise JobError(f"scores.{spec.name}.rubric: {exc}") from None


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


def merge_judgements(output: Path, specs: list[ScoreSpec]) -> None:
    """Put every judge score (and its reason) into the main output, by request key."""
    judges = [s for s in specs if s.grader == "judge" and judge_output(output, s).exists()]
    if not judges or not output.exists():
        return
    frame = pl.read_parquet(output)
    for spec in judges:
        answers = pl.read_parquet(judge_output(output, spec)).filter(pl.col("status") == "ok")
        low, high = spec.scale
        parsed = [parse_judgement(text, low, high) for text in answers.get_column("response")]
        graded = pl.DataFrame(
            {
                "request_key": answers.get_column(PROMPT_ID),
                score_column(spec.name): pl.Series([p[0] for p in parsed], dtype=pl.Float64),
                f"{score_column(spec.name)}_reason": pl.Series(
                    [p[1] for p in parsed], dtype=pl.String
                ),
            }
        ).unique(subset="request_key", keep="last")
        frame = frame.drop(
            [c for c in graded.columns if c != "request_key" and c in frame.columns]
        ).join(graded, on="request_key", how="left")
    write_parquet_atomic(frame, output)
