"""Shared fixtures: a built-in gateway on a real socket, job files, and a CLI runner."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from click.testing import CliRunner, Result
from services import redis_server, redis_url, s3_bucket, s3_server  # noqa: F401 (fixtures)

from batchrun.cli import main
from batchrun.gateway import GatewaySettings, GatewayThread

# A fresh sentinel per session: it is the key of every test, so finding it in any
# file or output of the suite (``pytest_sessionfinish``) means the key leaked.
SENTINEL = secrets.token_hex(12)
TEST_KEY = f"sk-sentinel-{SENTINEL}"
KEY_ENV = "BATCHRUN_TEST_KEY"
# Every variable a test or an example job names as its key holds the sentinel.
SENTINEL_ENVS = (KEY_ENV, "AIHUBMIX_API_KEY")
_CAPTURED: list[str] = []


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


def spawn_run(*args: str) -> subprocess.Popen[str]:
    """``batchrun run ARGS`` as its own process (as cron runs it), with the test key."""
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun", "run", *args],
        env={**os.environ, KEY_ENV: TEST_KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def find_sentinel(root: Path, texts: list[str], sentinel: str = SENTINEL) -> list[str]:
    """Where ``sentinel`` occurs: files under ``root`` (Parquet decoded) and ``texts``."""
    import polars as pl

    found = [f"captured output #{i}" for i, text in enumerate(texts) if sentinel in text]
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        if path.suffix == ".parquet":
            try:
                text = pl.read_parquet(path).write_ndjson()
            except Exception:  # a part being written or a deliberately broken file
                text = path.read_bytes().decode("utf-8", errors="replace")
        else:
            text = path.read_bytes().decode("utf-8", errors="replace")
            if path.suffix == ".json" and "\\u" in text:
                with contextlib.suppress(ValueError):
                    text += json.dumps(json.loads(text), ensure_ascii=False)
        if sentinel in text:
            found.append(str(path))
    return found


@pytest.fixture(autouse=True, scope="session")
def _sentinel_everywhere() -> Iterator[None]:
    """The sentinel key in every key variable, and every CLI result's output recorded."""
    saved = {name: os.environ.get(name) for name in SENTINEL_ENVS}
    os.environ.update(dict.fromkeys(SENTINEL_ENVS, TEST_KEY))
    original = CliRunner.invoke

    def recording(self: CliRunner, *args: Any, **kwargs: Any) -> Result:
        result = original(self, *args, **kwargs)
        _CAPTURED.append(result.output)
        return result

    CliRunner.invoke = recording  # type: ignore[method-assign]
    yield
    CliRunner.invoke = original  # type: ignore[method-assign]
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep what pytest captured of each test (stdout, stderr, logs, failures) for the scan."""
    _CAPTURED.extend(text for _, text in report.sections)
    if report.failed:
        _CAPTURED.append(report.longreprtext)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if the sentinel key is in any file under the base temp or any output."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or getattr(session.config, "workerinput", None) is not None:
        return
    started = time.monotonic()
    leaks = find_sentinel(factory.getbasetemp(), _CAPTURED)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.write_line(f"the sentinel key leaked into: {', '.join(leaks[:20])}", red=True)
    elif reporter is not None:
        reporter.write_line(
            f"sentinel key scan: clean ({len(_CAPTURED)} outputs, "
            f"{time.monotonic() - started:.1f} s)"
        )


__all__ = [
    "KEY_ENV",
    "SENTINEL",
    "TEST_KEY",
    "find_sentinel",
    "invoke",
    "job_dict",
    "make_prompts",
    "write_job",
]
