"""What a job may cost before it is sent: from the plan and the price table.

``estimated_cost`` promises a range, from input tokens alone to every
output running to its ``max_tokens``, over the models that have a price.
"""

from __future__ import annotations

from batchrun.prepare import Prepared
from batchrun.pricing import PER_TOKENS


def estimated_cost(prepared: Prepared) -> tuple[float | None, float | None]:
    """The job's cost if no output were written, and if every output ran to max_tokens.

    Models without a price are left out; None when no model has one, and the
    upper bound is None when some priced model has no max_tokens.
    """
    plan = prepared.plan
    per_model_input = plan.estimated_input_tokens() / max(len(plan.models), 1)
    requests_per_model = plan.rows * prepared.job.samples
    low = high = 0.0
    priced = uncapped = False
    for spec, model in zip(prepared.job.models, plan.models, strict=True):
        price = prepared.prices.price_of(spec)
        if price is None:
            continue
        priced = True
        uncapped = uncapped or not model.max_output_tokens
        low += per_model_input * price.input / PER_TOKENS
        high += (
            per_model_input * price.input
            + model.max_output_tokens * requests_per_model * price.output
        ) / PER_TOKENS
    if not priced:
        return None, None
    return low, None if uncapped else high
