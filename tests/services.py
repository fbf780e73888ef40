"""Real servers for the tests: Redis (``redis-server``) and S3 (moto's server), on 127.0.0.1.

Each is started once per test session on a free port. Where one cannot be
started the tests that need it are skipped on a developer's machine, but fail
under CI (``CI`` set), so a missing install never passes as green.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing(what: str) -> None:
    """Fail under CI, skip elsewhere: ``what`` is not installed here."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is needed by this test and CI must provide it")
    pytest.skip(f"{what} is not installed")


def _wait_port(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


@dataclass
class RedisServer:
    """A ``redis-server`` without persistence; ``stop`` and ``start`` model an outage."""

    binary: str
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def flush(self) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        client.flushall()
        client.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A Redis server for the session (flushed by ``redis_url`` before each test)."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server")
    assert binary is not None
    server = RedisServer(binary, free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty Redis."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@dataclass
class S3Server:
    """moto's S3 server; ``env`` is what a process needs to reach it."""

    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3-compatible server on 127.0.0.1 for the session."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        missing("moto[server]")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _wait_port(port)
    yield S3Server(f"http://127.0.0.1:{port}")
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A new bucket, with the environment set to reach it; its name."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    bucket = f"b{tmp_path.name.lower().replace('_', '-')[-40:]}-{free_port()}"
    s3_server.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    return bucket
