"""Which models of a job go through a provider batch API, and through which one.

A model's ``mode`` wins over the job's. Chat and embeddings go through
OpenAI's Batch API, Claude's messages through Anthropic's Message Batches;
any other format, or a streamed model, in batch mode is a job error.
"""

from __future__ import annotations

from typing import Literal

from batchrun.config import Job
from batchrun.errors import JobError
from batchrun.plan import PlannedModel

Lifecycle = Literal["openai", "anthropic"]
# The kinds of remote job (``remote_work.RemoteJob.kind``) the batch lane owns, by lifecycle.
BATCH_KINDS: dict[str, Lifecycle] = {"openai-batch": "openai", "anthropic-batch": "anthropic"}
LIFECYCLES: dict[str, Lifecycle] = {
    "chat": "openai",
    "embeddings": "openai",
    "messages": "anthropic",
}


def is_batch(job: Job, index: int) -> bool:
    """Whether ``job.models[index]`` runs in batch mode."""
    return (job.models[index].mode or job.mode) == "batch"


def batch_models(job: Job, models: list[PlannedModel]) -> list[PlannedModel]:
    """The planned models in batch mode; ``JobError`` for one no batch API can take."""
    chosen = []
    for model in models:
        if not is_batch(job, model.index):
            continue
        field = f"models[{model.index}]"
        if model.api not in LIFECYCLES:
            raise JobError(
                f"{model.name} uses api: {model.api}, which no batch API takes; batch mode "
                "serves chat and embeddings (OpenAI) and messages (Anthropic); set mode: online",
                field=field,
            )
        if model.stream:
            raise JobError(
                f"{model.name} streams; batch answers are not streamed, set stream: false",
                field=field,
            )
        chosen.append(model)
    return chosen


def lifecycle_of(model: PlannedModel) -> Lifecycle:
    """The batch API a batch-mode model goes through."""
    return LIFECYCLES[model.api]
