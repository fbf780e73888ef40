"""Shared fixtures: a built-in gateway on a real socket, job files, and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from click.testing import CliRunner, Result

from batchrun.cli import main
from batchrun.gateway import GatewaySettings, GatewayThread

TEST_KEY = "sk-testKEY0123456789abcdefSECRET"
KEY_ENV = "BATCHRUN_TEST_KEY"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own folder with the test key in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KEY_ENV, TEST_KEY)


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., GatewayThread]]:
    """Start built-in gateways on 127.0.0.1 with the given settings; stop them afterwards."""
    started: list[GatewayThread] = []

    def start(**settings: Any) -> GatewayThread:
        thread = GatewayThread(GatewaySettings(**settings)).__enter__()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.__exit__(None, None, None)


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayThread]) -> GatewayThread:
    """A healthy built-in gateway."""
    return start_gateway()


def make_prompts(path: Path, count: int = 6) -> Path:
    """A small arithmetic prompt set with ids and expected answers."""
    frame = pl.DataFrame(
        {
            "id": [f"p{i:03d}" for i in range(count)],
            "question": [f"What is {i} + {i + 1}?" for i in range(count)],
            "expected": [str(2 * i + 1) for i in range(count)],
        }
    )
    if path.suffix == ".csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    return path


def job_dict(base_url: str, **overrides: Any) -> dict[str, Any]:
    """A valid job for the gateway at ``base_url``; top-level keys replaced by ``overrides``."""
    job: dict[str, Any] = {
        "name": "test",
        "provider": {"base_url": base_url, "api_key_env": KEY_ENV},
        "input": {"path": "prompts.parquet", "id_column": "id"},
        "prompt": {"system": "Be brief.", "user": "{{ question }}"},
        "models": ["model-a", {"id": "model-b", "alias": "b"}],
        "params": {"temperature": 0, "max_tokens": 32},
        "limits": {"concurrency": 4, "timeout_s": 10, "max_retries": 3, "backoff_base_s": 0.001},
        "output": {"path": "out/results.parquet", "flush_every": 5, "flush_seconds": 1},
    }
    job.update(overrides)
    return job


def write_job(path: Path, job: dict[str, Any]) -> Path:
    """Write ``job`` as YAML, making the prompt file it names if it is missing."""
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    prompts = Path(job["input"]["path"]) if isinstance(job.get("input"), dict) else None
    if prompts is not None and prompts.name.startswith("prompts") and not prompts.exists():
        make_prompts(prompts)
    return path


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run the batchrun CLI in-process, stdout and stderr kept apart."""
    runner = CliRunner()
    return runner.invoke(main, list(args), env=env, catch_exceptions=False)


__all__ = ["KEY_ENV", "TEST_KEY", "invoke", "job_dict", "make_prompts", "write_job"]
