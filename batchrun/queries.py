"""Read-only questions to a gateway: its model list and what is left on the key.

Used before a run (every model of the job must be offered; what the job may
cost against the balance) and by the ``models`` and ``balance`` commands.
Nothing here sends a generation request or writes a file.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from batchrun.catalog import (
    Balance,
    ModelInfo,
    parse_models,
    parse_subscription,
    parse_token_usage,
    parse_user_self,
)
from batchrun.config import Job
from batchrun.display import money
from batchrun.errors import CatalogError, ConnectionFailure, FatalRequestError, JobError

if TYPE_CHECKING:
    from batchrun.client import GatewayClient

T = TypeVar("T")


async def fetch_models(client: GatewayClient) -> list[ModelInfo]:
    """The gateway's model list.

    A refused key raises ``FatalRequestError`` (exit 3, as in a run); any
    other answer without a list raises ``CatalogError`` with its status.
    """
    status, payload = await client.get_json("models")
    if status == 401 or (status == 403 and "model" not in str(payload).lower()):
        raise FatalRequestError(
            f"the gateway refused the run: its model list answered HTTP {status} "
            "(the API key was refused; check the key in the provider's variable)",
            http_status=status,
        )
    if not isinstance(payload, dict):
        raise CatalogError(f"HTTP {status} from the models endpoint", status=status)
    models = parse_models(payload)
    if status != 200:
        raise CatalogError(f"HTTP {status} from the models endpoint", status=status)
    return models


async def fetch_balance(client: GatewayClient, access_token: str | None = None) -> Balance:
    """What is left on the key, from whichever billing endpoint the gateway has.

    With the account's ``access_token``, ``/api/user/self`` is asked instead.
    """
    if access_token is not None:
        _, user = await client.get_json("../api/user/self", headers={"Authorization": access_token})
        return parse_user_self(user)
    problems = []
    status, subscription = await client.get_json("dashboard/billing/subscription")
    if status == 200:
        _, usage = await client.get_json("dashboard/billing/usage")
        try:
            return parse_subscription(subscription, usage)
        except CatalogError as exc:
            problems.append(str(exc))
    status, token = await client.get_json("../api/usage/token/")
    if status == 200:
        try:
            return parse_token_usage(token)
        except CatalogError as exc:
            problems.append(str(exc))
    raise CatalogError("; ".join(problems) or "the gateway offers no balance endpoint")


async def check_models(
    client: GatewayClient,
    job: Job,
    base_url: str,
    model_check: bool,
    notify: Callable[[str], None],
    job_path: Path | None = None,
) -> float | None:
    """Before sending: every model of the job must be on the gateway's list.

    Returns the list's round trip in seconds when the gateway answered it
    (so the key was accepted), None when the list could not be had.
    """
    started = time.perf_counter()
    try:
        offered = {model.id for model in await fetch_models(client)}
    except CatalogError as exc:
        if exc.status == 404 and model_check:
            raise JobError(
                f"the gateway at {base_url} has no model list (HTTP 404): the base URL is "
                "probably wrong (OpenAI-compatible ones usually end in /v1); fix it, or pass "
                "--no-model-check to send anyway",
                field="provider.base_url",
            ) from None
        notify(f"warning: could not check the model list at {base_url} ({exc}); sending anyway")
        return None
    except ConnectionFailure as exc:
        notify(f"warning: could not check the model list at {base_url} ({exc}); sending anyway")
        return None
    round_trip = time.perf_counter() - started
    missing = [m.id for m in job.models if m.id not in offered]
    if not missing:
        return round_trip
    message = (
        f"model {missing[0]!r} is not offered by the gateway at {base_url} "
        f"({len(offered)} models are; `{_list_command(job, base_url, job_path)}` lists them)"
    )
    if not model_check:
        notify(f"warning: {message}; sending anyway (--no-model-check)")
        return round_trip
    raise JobError(
        f"{message}; fix the id, or pass --no-model-check to send anyway", field="models"
    )


def _list_command(job: Job, base_url: str, job_path: Path | None) -> str:
    """A ``batchrun models`` command that works when pasted."""
    if job_path is not None:
        return f"batchrun models --job {shlex.quote(str(job_path))}"
    key_env = getattr(job.provider, "api_key_env", None)
    command = f"batchrun models --base-url {shlex.quote(base_url)}"
    return command + (f" --api-key-env {key_env}" if key_env else "")


async def report_balance(
    client: GatewayClient, high_cost: float | None, notify: Callable[[str], None]
) -> None:
    """Say what the job may cost (``high_cost``) against what is left on the key, if known."""
    if high_cost is None:
        return
    try:
        balance = await fetch_balance(client)
    except (CatalogError, ConnectionFailure):
        return
    if balance.unlimited:
        notify(f"balance: unlimited; this job may cost up to {money(high_cost)}")
        return
    assert balance.remaining_usd is not None
    verdict = "" if balance.remaining_usd >= high_cost else " (warning: it may not be enough)"
    notify(
        f"balance: {money(balance.remaining_usd)} left; this job may cost up to {money(high_cost)}"
        f"{verdict}"
    )


def query_gateway(
    job: Job | None,
    base_url: str | None,
    api_key: str | None,
    ask: Callable[[GatewayClient], Coroutine[Any, Any, T]],
) -> T:
    """Open a client on the job's gateway (or ``base_url``) and run one query with it."""
    from batchrun.client import GatewayClient
    from batchrun.endpoint import open_client
    from batchrun.loop import run_async

    async def go() -> T:
        if job is not None:
            async with open_client(job, api_key, timeout_s=30) as (_, client):
                return await ask(client)
        assert base_url is not None
        async with GatewayClient(base_url, api_key, timeout_s=30) as client:
            return await ask(client)

    return run_async(go())
