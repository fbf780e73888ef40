"""The key never reaches a file batchrun writes or a line it prints, whatever happens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import TEST_KEY, invoke, job_dict, make_prompts, write_job

from batchrun.gateway import GatewayThread
from batchrun.gateway.faults import describe_faults
from batchrun.redact import SecretRegistry, excerpt, redact, register, secrets

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


@pytest.fixture
def registry() -> Iterator[SecretRegistry]:
    """The process-wide secret registry, emptied before and after the test."""
    secrets.clear()
    yield secrets
    secrets.clear()


def test_registered_secrets_are_redacted_everywhere(registry: SecretRegistry) -> None:
    """Every registered secret (key, access token, header value) is masked in any text."""
    register("tok-access-0123456789")
    register("hdr-value-secret-42")
    register("short")  # under the minimum: ordinary words are left alone
    text = "token tok-access-0123456789 and header hdr-value-secret-42, short"
    assert redact(text) == "token [redacted] and header [redacted], short"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("could not check the model list (Authorization: Bearer abc.def-ghi)", "abc.def-ghi"),
        ('{"headers": {"x-api-key": "anthropic-key-zz"}}', "anthropic-key-zz"),
        ("x-api-key: qwerty-123456", "qwerty-123456"),
        ("GET http://admin:pa55word@host/v1 failed", "pa55word"),
        ("access_token=deadbeefcafe", "deadbeefcafe"),
    ],
)
def test_generic_key_shapes_are_redacted(text: str, secret: str) -> None:
    """Bearer tokens, x-api-key values, URL credentials and access tokens are masked unknown."""
    assert secret not in redact(text)


def test_excerpt_redacts_before_it_cuts(registry: SecretRegistry) -> None:
    """A key that straddles the cut is masked whole, not left half in the excerpt."""
    register(TEST_KEY)
    text = "e" * 70 + TEST_KEY + "f" * 1000
    short = excerpt(text, limit=80)
    assert TEST_KEY[:10] not in short and TEST_KEY[-10:] not in short
    assert "1,0" in short  # the length of what was cut is told


def test_redact_masks_a_key_cut_by_earlier_truncation(registry: SecretRegistry) -> None:
    """Text already cut inside a known key (``...sk-sentinel-ab…``) loses the key's start."""
    register(TEST_KEY)
    cut = "invalid token " + TEST_KEY[:20] + "…"
    assert TEST_KEY[:20] not in redact(cut)


def test_excerpt_of_a_huge_value_is_short() -> None:
    """A 10 MB value is quoted as about 80 characters and its length."""
    short = excerpt("v" * 10_000_000)
    assert len(short) < 120 and "10,000,000 chars" in short


def test_loading_a_job_registers_header_values(registry: SecretRegistry, tmp_path: Path) -> None:
    """Values of provider.headers are secrets from the moment the job is loaded."""
    from batchrun.config import load_job, resolve_api_key

    job = job_dict("https://gw.example.com/v1")
    job["provider"]["headers"] = {"X-Tenant-Token": "tenant-secret-123456"}
    write_job(tmp_path / "job.yaml", job)
    loaded = load_job(tmp_path / "job.yaml")
    assert "tenant-secret-123456" in registry
    assert resolve_api_key(loaded.job) == TEST_KEY
    assert TEST_KEY in registry
    assert "[redacted]" in redact(f"echo tenant-secret-123456 {TEST_KEY}")


def test_sentinel_scan_finds_the_key_in_every_kind_of_file() -> None:
    """The suite-wide scan finds the sentinel in Parquet, JSON, HTML, text and outputs."""
    import tempfile

    import polars as pl
    from conftest import SENTINEL, find_sentinel

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        assert find_sentinel(root, ["clean"]) == []
        pl.DataFrame({"error_message": [f"bad key {TEST_KEY}"] * 50}).write_parquet(
            root / "r.parquet", compression="zstd"
        )
        (root / "m.json").write_text(
            '{"k": "' + "".join(f"\\u{ord(c):04x}" for c in SENTINEL) + '"}'
        )
        (root / "r.html").write_text(f"<td>{TEST_KEY}</td>")
        found = find_sentinel(root, ["clean", f"printed {TEST_KEY}"])
    assert sorted(Path(f).name if "/" in f else f for f in found) == [
        "captured output #1",
        "m.json",
        "r.html",
        "r.parquet",
    ]


def test_echoed_key_never_printed_nor_stored(tmp_path: Path) -> None:
    """A gateway that echoes the request headers in its errors leaks no key anywhere.

    Its model list fails with a JSON error quoting the Authorization header
    (the run warns and goes on), and every answer is a 400 quoting it too.
    """
    import json as jsonlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import polars as pl
    from conftest import KEY_ENV, TEST_KEY, invoke, job_dict, write_job

    class Echo(BaseHTTPRequestHandler):
        def _answer(self, status: int) -> None:
            seen = f"received headers: Authorization: {self.headers.get('Authorization')}"
            body = jsonlib.dumps({"error": {"message": seen, "type": "invalid_request"}})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def do_GET(self) -> None:
            self._answer(500)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(400)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        write_job(Path("job.yaml"), job_dict(url))
        result = invoke("run", "job.yaml", "--json")
        models = invoke("balance", "--base-url", url, "--api-key-env", KEY_ENV)
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1
    assert "could not check the model list" in result.stderr
    for text in (result.stdout, result.stderr, models.stdout, models.stderr):
        assert TEST_KEY not in text and TEST_KEY[:12] not in text
    frame = pl.read_parquet("out/results.parquet")
    assert frame.height == 12
    for message in frame["error_message"].to_list():
        assert TEST_KEY not in message and "[redacted]" in message
    manifest = Path("out/results.parquet.manifest.json").read_text()
    assert TEST_KEY not in manifest
