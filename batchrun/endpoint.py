"""Where a job's requests go: its gateway's base URL, and a client open on it.

For ``provider: mock`` the built-in gateway is started on 127.0.0.1 for as
long as the URL is in use; for an HTTP provider the base URL is the job's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from batchrun.config import HttpProvider, Job, MockProvider

if TYPE_CHECKING:
    from batchrun.client import GatewayClient


@contextlib.asynccontextmanager
async def gateway_url(job: Job) -> AsyncIterator[str]:
    """The job's base URL, or that of a built-in gateway started for as long as it is used."""
    provider = job.provider
    if isinstance(provider, MockProvider):
        from batchrun.gateway import Gateway, GatewaySettings, serve
        from batchrun.gateway.settings import BatchSettings

        mock = provider.mock
        settings = GatewaySettings(
            models=mock.models,
            latency_ms=mock.latency_ms,
            model_latency_ms=dict(mock.model_latency_ms),
            latency_sigma=mock.latency_sigma,
            accuracy=dict(mock.accuracy),
            stream_chunk_ms=mock.stream_chunk_ms,
            fault_rates=dict(mock.faults),
            ratelimit_dialect=mock.ratelimit_dialect,
            key_rpm=mock.key_rpm,
            model_rpm=dict(mock.model_rpm),
            model_tpm=dict(mock.model_tpm),
            rate_limit_window_s=mock.rate_limit_window_s,
            max_parallel=mock.max_parallel,
            seed=mock.seed,
            batches=BatchSettings(**mock.batches.model_dump()) if mock.batches else None,
        )
        async with serve(Gateway(settings)) as url:
            yield url
    else:
        yield provider.base_url


@contextlib.asynccontextmanager
async def open_client(
    job: Job, api_key: str | None, *, timeout_s: float | None = None
) -> AsyncIterator[tuple[str, GatewayClient]]:
    """A client on the job's gateway with the job's headers and limits, and its base URL."""
    from batchrun.client import GatewayClient

    headers = job.provider.headers if isinstance(job.provider, HttpProvider) else {}
    async with (
        gateway_url(job) as base_url,
        GatewayClient(
            base_url,
            api_key,
            timeout_s=timeout_s if timeout_s is not None else job.limits.timeout_s,
            idle_timeout_s=job.limits.stream_idle_timeout_s,
            extra_headers=headers,
            max_connections=job.limits.concurrency,
        ) as client,
    ):
        yield base_url, client
