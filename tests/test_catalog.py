"""The model list and the balance: every shape the gateways send, and the commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import KEY_ENV, invoke, job_dict, make_prompts, write_job

from batchrun.catalog import CatalogError, parse_models, parse_subscription, parse_token_usage
from batchrun.gateway import GatewayThread

DATA = [{"id": "gpt-4o-mini", "object": "model", "created": 1626777600, "owned_by": "openai"}]


@pytest.mark.parametrize(
    "payload",
    [
        {"object": "list", "data": DATA},
        {"success": True, "data": DATA},
        {"success": True, "object": "list", "data": DATA},
    ],
    ids=["one-api", "new-api-2025", "new-api-2026"],
)
def test_three_list_shapes(payload: dict[str, object]) -> None:
    """All three model-list shapes give the same models."""
    assert [m.id for m in parse_models(payload)] == ["gpt-4o-mini"]


def test_model_list_errors() -> None:
    """An error body (even with HTTP 200) or success: false is an error, with its words."""
    with pytest.raises(CatalogError, match="Invalid token"):
        parse_models({"error": {"message": "Invalid token", "type": "new_api_error"}})
    with pytest.raises(CatalogError, match="no access"):
        parse_models({"success": False, "message": "no access"})


def test_balance_from_dashboard() -> None:
    """hard_limit_usd minus total_usage (in cents)."""
    got = parse_subscription({"hard_limit_usd": 12.5}, {"total_usage": 250.0})
    assert (got.remaining_usd, got.used_usd, got.limit_usd) == (10.0, 2.5, 12.5)
    assert parse_subscription({"hard_limit_usd": 100000000}, {"total_usage": 0}).unlimited


def test_balance_from_token_quota() -> None:
    """new-api quota units: 500,000 = $1."""
    got = parse_token_usage(
        {
            "data": {
                "total_granted": 5_000_000,
                "total_used": 1_000_000,
                "total_available": 4_000_000,
                "unlimited_quota": False,
            }
        }
    )
    assert (got.remaining_usd, got.used_usd, got.limit_usd) == (8.0, 2.0, 10.0)


@pytest.mark.parametrize("shape", ["oneapi", "newapi", "newapi2026"])
def test_models_command(start_gateway: Callable[..., GatewayThread], shape: str) -> None:
    """batchrun models lists the gateway's models in every shape, as a table or JSON."""
    gw = start_gateway(models=["alpha", "beta"], models_shape=shape)
    table = invoke("models", "--base-url", gw.url, "--api-key-env", KEY_ENV)
    assert table.exit_code == 0
    assert "alpha" in table.stdout and "beta" in table.stdout
    listed = json.loads(
        invoke("models", "--base-url", gw.url, "--api-key-env", KEY_ENV, "--json").stdout
    )
    assert [m["id"] for m in listed] == ["alpha", "beta"]


def test_models_command_bad_key(start_gateway: Callable[..., GatewayThread]) -> None:
    """A refused key is one clear line, and exit 3 as in a run (issue 17, finding 4)."""
    gw = start_gateway(keys=["sk-other"])
    result = invoke("models", "--base-url", gw.url, "--api-key-env", KEY_ENV)
    assert result.exit_code == 3 and "the API key was refused" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("billing", "source"), [("dashboard", "dashboard/billing"), ("token_usage", "api/usage/token")]
)
def test_balance_command(
    start_gateway: Callable[..., GatewayThread], billing: str, source: str
) -> None:
    """batchrun balance reads whichever billing endpoint the gateway has."""
    gw = start_gateway(balance_usd=20.0, used_usd=5.0, billing=billing)
    result = invoke("balance", "--base-url", gw.url, "--api-key-env", KEY_ENV, "--json")
    assert result.exit_code == 0
    found = json.loads(result.stdout)
    assert (found["remaining_usd"], found["used_usd"], found["source"]) == (15.0, 5.0, source)


def test_balance_with_job_shows_cost(start_gateway: Callable[..., GatewayThread]) -> None:
    """With --job the estimated cost of the job is set against the balance."""
    gw = start_gateway(balance_usd=0.01, used_usd=0.0)
    make_prompts(Path("prompts.parquet"), 50)
    write_job(
        Path("job.yaml"),
        job_dict(
            gw.url,
            prices={"model-a": {"input": 100, "output": 100}, "model-b": {"input": 1, "output": 1}},
        ),
    )
    result = invoke("balance", "--job", "job.yaml")
    assert result.exit_code == 0
    assert "balance: $0.0100 left of $" in result.stdout and "this job: $" in result.stdout
    assert "may not cover the job" in result.stderr
    run = invoke("run", "job.yaml")
    assert "balance: $0.0100 left; this job may cost up to" in run.stderr
    assert "it may not be enough" in run.stderr


def test_run_refuses_models_the_gateway_lacks(start_gateway: Callable[..., GatewayThread]) -> None:
    """A model missing from the gateway's list stops the run before any request (exit 2)."""
    gw = start_gateway(models=["model-a"])
    write_job(Path("job.yaml"), job_dict(gw.url))
    result = invoke("run", "job.yaml")
    assert result.exit_code == 2
    assert "model 'model-b' is not offered by the gateway" in result.stderr
    assert "--no-model-check" in result.stderr
    assert gw.gateway.stats.requests == 0


def test_no_batch_api(start_gateway: Callable[..., GatewayThread]) -> None:
    """/v1/batches is an invalid URL and /v1/files a no-channel error, as on the gateways."""
    import urllib.error
    import urllib.request

    gw = start_gateway()
    for path, status in (("/batches", 404), ("/files", 503)):
        request = urllib.request.Request(gw.url + path, method="POST", data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request)
        assert info.value.code == status
        info.value.close()


def test_balance_from_user_self(
    start_gateway: Callable[..., GatewayThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    """/api/user/self with the access token (not the key); a wrong token is one clear line."""
    gw = start_gateway(balance_usd=30.0, used_usd=10.0, access_token="tok-123")
    monkeypatch.setenv("ACCESS", "tok-123")
    result = invoke(
        "balance",
        "--base-url",
        gw.url,
        "--api-key-env",
        KEY_ENV,
        "--access-token-env",
        "ACCESS",
        "--json",
    )
    found = json.loads(result.stdout)
    assert (found["remaining_usd"], found["used_usd"], found["source"]) == (
        20.0,
        10.0,
        "api/user/self",
    )
    monkeypatch.setenv("ACCESS", "wrong")
    refused = invoke("balance", "--base-url", gw.url, "--access-token-env", "ACCESS")
    assert refused.exit_code == 2 and "access token 无效" in refused.stderr
