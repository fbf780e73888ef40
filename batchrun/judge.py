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
    """A judge's scores and reasons by the main output's request key, from its answers."""
    answers = pl.read_parquet(path, columns=[PROMPT_ID, "status", "response"]).filter(
        pl.col("status") == "ok"
    )
    low, high = spec.scale
    parsed = [parse_judgement(text, low, high) for text in answers.get_column("response")]
    column = score_column(spec.name)
    return pl.DataFrame(
        {
            "request_key": answers.get_column(PROMPT_ID),
            column: pl.Series([p[0] for p in parsed], dtype=pl.Float64),
            f"{column}_reason": pl.Series([p[1] for p in parsed], dtype=pl.String),
        }
    ).unique(subset="request_key", keep="last")
