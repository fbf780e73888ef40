"""What both batch lifecycles promise: the shape of a batch's state, and their errors.

``BatchApi`` is the interface ``openai.OpenAIBatches`` and
``anthropic.AnthropicBatches`` implement; ``BatchState`` is a batch as
either provider describes it, reduced to what the lane acts on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from batchrun.batch.lines import Chunk
from batchrun.batch.transport import BatchHttp, Reply
from batchrun.errors import JobError, ServerError
from batchrun.plan import PlannedModel

# running: not finished; ended: answers to collect (completed, expired or cancelled);
# failed: the provider refused the whole batch (validation); gone: the provider does not know it.
Phase = Literal["running", "ended", "failed", "gone"]


@dataclass
class BatchState:
    """A batch as last polled."""

    phase: Phase
    how: str = ""  # the provider's own status word (completed, expired, ended, failed...)
    counts: dict[str, int] = field(default_factory=dict)
    results: list[str] = field(default_factory=list)  # file ids or a results URL
    errors: list[tuple[int | None, str, str]] = field(default_factory=list)  # line, code, text
    expires_at: float | None = None


@dataclass(frozen=True)
class Listed:
    """One batch of the provider's list, as far as reconciling needs it."""

    remote_id: str
    submission: str | None  # batchrun's submission id from the metadata, if any
    created_at: float
    total: int


class BatchApi(Protocol):
    """One provider's batch lifecycle."""

    kind: str
    http: BatchHttp

    async def listed(self) -> list[Listed]:
        """Recent batches (``JobError`` on a 404: no batch API there)."""
        ...

    async def submit(self, chunk: Chunk, model: PlannedModel, submission: str) -> str:
        """Create a batch of ``chunk``'s lines; the provider's batch id."""
        ...

    async def state(self, remote_id: str) -> BatchState:
        """The batch's phase, counts and where its answers are."""
        ...

    async def fetch(self, ref: str) -> bytes | None:
        """The content of one results file or URL; None when it is missing."""
        ...

    async def cancel(self, remote_id: str) -> None:
        """Ask the provider to cancel the batch."""
        ...


def unsupported(http: BatchHttp, path: str) -> JobError:
    """The one line for a provider without batches."""
    return JobError(
        f"{http.base} does not serve a batch API (404 on {path}); one-api/new-api gateways "
        "do not; point the job at OpenAI, Anthropic or a gateway that passes batches "
        "through, or set mode: online",
        field="mode",
    )


def provider_error(reply: Reply, what: str, http: BatchHttp) -> ServerError:
    """A provider's unexpected answer to a lifecycle step (the step is tried again later)."""
    return ServerError(
        f"{what}: HTTP {reply.status}: {reply.snippet(http.secrets)}", http_status=reply.status
    )
