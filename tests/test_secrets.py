"""The key never reaches a file batchrun writes or a line it prints, whatever happens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TEST_KEY, invoke, job_dict, make_prompts, write_job

from batchrun.gateway import GatewayThread
from batchrun.gateway.faults import describe_faults
from batchrun.redact import redact

SECRET_PARTS = (TEST_KEY, TEST_KEY.removeprefix("sk-"))


def assert_no_key(text: str, where: str) -> None:
    for part in SECRET_PARTS:
        assert part not in text, f"the key leaked into {where}"


def test_key_never_leaks(start_gateway: Callable[..., GatewayThread], tmp_path: Path) -> None:
    """Successes, every fault the gateway can produce, and --debug: the key is nowhere."""
    gw = start_gateway()
    make_prompts(Path("prompts.parquet"), 2)
    printed: list[str] = []
    scenarios = [None, *describe_faults()]
    for index, scenario in enumerate(scenarios):
        headers = {"X-Sim-Scenario": scenario} if scenario else {}
        job = job_dict(
            gw.url,
            provider={"base_url": gw.url, "api_key_env": "BATCHRUN_TEST_KEY", "headers": headers},
            limits={"max_retries": 1, "backoff_base_s": 0.001, "max_rate_limited_s": 0.5},
            output={"path": f"out/run-{index}.parquet", "flush_every": 1},
        )
        write_job(Path(f"job-{index}.yaml"), job)
        result = invoke("run", f"job-{index}.yaml", "--debug")
        printed.append(result.output)
        if scenario in (None, "S13", "S07c"):
            again = invoke("run", f"job-{index}.yaml", "--debug", "--json", "--retry-errors")
            printed.append(again.output)
    # The gateway saw the key on every request: the test is not vacuous.
    assert all(TEST_KEY in a for a in gw.gateway.stats.authorizations)
    assert gw.gateway.stats.by_status[401] > 0
    for text in printed:
        assert_no_key(text, "printed output")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in written)
    assert any(p.name.endswith(".manifest.json") for p in written)
    for path in written:
        assert_no_key(path.read_bytes().decode("utf-8", errors="replace"), str(path))


def test_echoed_key_is_redacted_in_results(start_gateway: Callable[..., GatewayThread]) -> None:
    """A gateway that echoes the key in its error: the row keeps the error, not the key."""
    import polars as pl

    gw = start_gateway(model_scenarios={"model-a": "S07c"})
    write_job(Path("job.yaml"), job_dict(gw.url, models=["model-a"]))
    assert invoke("run", "job.yaml").exit_code == 3
    message = pl.read_parquet("out/results.parquet")["error_message"][0]
    assert "invalid token [redacted]" in message


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer sk-abcdef123456",
        '{"api_key": "abc123secret"}',
        "x-api-key=zzzz9999",
        "sk-proj-ABCDEFGHIJ0123",
    ],
)
def test_redact_masks_key_shapes(text: str) -> None:
    """Key-shaped tokens are masked even when the key itself is not known."""
    masked = redact(text)
    assert "[redacted]" in masked
    for secret in ("sk-abcdef123456", "abc123secret", "zzzz9999", "ABCDEFGHIJ0123"):
        assert secret not in masked
