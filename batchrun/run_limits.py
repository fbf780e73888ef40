"""How a job's ``limits`` become a run's limiter, retry policy and shared limits.

``build_limiter`` gives the key's limits and each model's under them;
``connect_shared`` connects the shared limits of ``limits.share`` (Redis's
client is imported only for such a job); ``retry_policy`` gives the
runner's bounds and backoff.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchrun.config import Job
from batchrun.limits import Limiter, ScopeLimits, Shared
from batchrun.prepare import Prepared
from batchrun.runner import RetryPolicy

if TYPE_CHECKING:
    from batchrun.shared_limits import SharedLimits


def build_limiter(job: Job, shared: Shared | None = None) -> Limiter:
    """The run's limits: the key's, and each model's under it (never above the key's)."""
    limits = job.limits
    key = ScopeLimits(
        limits.concurrency, limits.rpm, limits.tpm, adaptive=False, burst=limits.burst
    )
    models = {
        model.name: ScopeLimits(
            min(model.concurrency or limits.concurrency, limits.concurrency),
            model.rpm,
            model.tpm,
            adaptive=limits.adaptive and limits.rpm is None,
            burst=limits.burst,
        )
        for model in job.models
    }
    return Limiter(key, models, shared=shared)


async def connect_shared(prepared: Prepared, pending: int) -> SharedLimits | None:
    """The job's shared limits (``limits.share``), connected; None for a job that sets none.

    Redis's client is imported here, so only the jobs that share limits pay for it.
    """
    if prepared.job.limits.share is None:
        return None
    from batchrun.shared_limits import open_shared

    return await open_shared(prepared.job, prepared.base_url, prepared.api_key, pending)


def retry_policy(job: Job) -> RetryPolicy:
    """How the run retries a failed request: the job's ``limits`` bounds and backoff."""
    limits = job.limits
    return RetryPolicy(
        max_retries=limits.max_retries,
        max_retry_time_s=limits.max_retry_time_s,
        base_delay_s=limits.backoff_base_s,
        max_delay_s=max(limits.backoff_max_s, limits.backoff_base_s),
        max_rate_limited_s=limits.max_rate_limited_s,
    )
