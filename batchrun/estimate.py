"""What a job may cost before it is sent: from the plan and the price table.

``estimated_cost`` promises a range, from input tokens alone to every
output running to its ``max_tokens``, over the models that have a price
(batch-mode models at their batch price);
``judge_estimates`` the same for each judge score, and ``pending_by_model`` how many
requests each model still has to send.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path

from batchrun.batch.mode import is_batch
from batchrun.prepare import Prepared
from batchrun.pricing import PER_TOKENS, batch_price, piece_estimate

CHARS_PER_TOKEN = 4  # as the plan estimates tokens


def estimated_cost(
    prepared: Prepared, todo: dict[str, int] | None = None
) -> tuple[float | None, float | None]:
    """The cost of the requests to send if no output were written, and if all ran to max_tokens.

    ``todo`` gives the requests still to send per model (``pending_by_model``);
    without it, every request of the plan counts. Models without a price are
    left out; None when no model has one, and the upper bound is None when
    some priced model has no max_tokens.
    """
    plan = prepared.plan
    per_request_input = plan.estimated_input_tokens() / max(plan.total, 1)
    every = plan.rows * prepared.job.samples
    low = high = 0.0
    priced = uncapped = False
    for spec, model in zip(prepared.job.models, plan.models, strict=True):
        price = prepared.prices.price_of(spec)
        if is_batch(prepared.job, model.index):
            price = batch_price(price)
        if price is None:
            continue
        priced = True
        requests = every if todo is None else todo.get(model.name, 0)
        if price.per_unit:
            piece = piece_estimate(price, model.params, per_request_input * CHARS_PER_TOKEN)
            low += requests * (piece or 0.0)
            high += requests * (piece or 0.0)
            uncapped = (
                uncapped or piece is None or (price.output > 0 and not model.max_output_tokens)
            )
        else:
            uncapped = uncapped or not model.max_output_tokens
        low += requests * per_request_input * price.input / PER_TOKENS
        high += (
            requests * per_request_input * price.input
            + model.max_output_tokens * requests * price.output
        ) / PER_TOKENS
    if not priced:
        return None, None
    return low, None if uncapped else high


def pending_by_model(prepared: Prepared, shard: tuple[int, int] | None = None) -> dict[str, int]:
    """Per model, how many of the plan's requests a plain run would send now."""
    import polars as pl

    from batchrun.store import done_keys

    skip: Container[str]
    try:
        skip = done_keys(prepared.output)
    except (OSError, pl.exceptions.PolarsError):
        skip = set()  # a damaged output: the run heals it first; here nothing counts as done
    plan = prepared.plan
    return {model.name: plan.count(skip=skip, shard=shard, models=[model]) for model in plan.models}


@dataclass(frozen=True)
class JudgeEstimate:
    """What one judge score will ask: at most one request per main answer."""

    name: str
    model: str
    requests: int  # one per main request (each could be ok)
    judged: int  # answers already judged (in the judge's output)
    low: float | None  # cost of the requests still to send, input only
    high: float | None  # and with every judgement at max_tokens


def judge_estimates(prepared: Prepared) -> list[JudgeEstimate]:
    """Each judge score's requests and cost, from the main plan and the judge's output."""
    from batchrun.config import ModelSpec
    from batchrun.judge import JUDGE_PARAMS, judge_output

    plan = prepared.plan
    found = []
    for spec in (s for s in prepared.job.scores if s.grader == "judge"):
        assert spec.model is not None and spec.rubric is not None
        output = judge_output(prepared.output, spec)
        judged = _ok_rows(output)
        todo = max(plan.total - judged, 0)
        price = prepared.prices.price_of(ModelSpec(id=spec.model))
        low = high = None
        if price is not None:
            # The rubric, the prompt and an answer of at most the main max_tokens.
            answer = max((m.max_output_tokens for m in plan.models), default=0)
            per_request = len(spec.rubric) / 4 + plan.estimated_input_tokens() / max(plan.total, 1)
            tokens_in = todo * (per_request + answer)
            low = tokens_in * price.input / PER_TOKENS
            high = low + todo * int(JUDGE_PARAMS["max_tokens"]) * price.output / PER_TOKENS
        found.append(JudgeEstimate(spec.name, spec.model, plan.total, judged, low, high))
    return found


def _ok_rows(path: Path) -> int:
    if not path.exists():
        return 0
    import polars as pl

    return int(
        pl.scan_parquet(path).filter(pl.col("status") == "ok").select(pl.len()).collect().item()
    )
