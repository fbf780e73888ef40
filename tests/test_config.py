"""The job file: schema, line numbers in errors, interpolation, the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.config import MockProvider, load_job, resolve_api_key
from batchrun.errors import JobError

GOOD = """\
name: capitals
provider:
  base_url: https://aihubmix.com/v1/
  api_key_env: MY_KEY
input:
  path: data.parquet
prompt:
  user: "Capital of {{ country }}?"
models:
  - gpt-4o-mini
  - id: claude-sonnet-4-5
    alias: sonnet
    params: {temperature: 0.2}
params: {temperature: 0, max_tokens: 256}
output:
  path: results/{name}-{date}.parquet
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(JobError) as info:
        load_job(write(tmp_path, text), environ=env or {})
    return str(info.value)


def test_valid_job_loads_with_shorthands(tmp_path: Path) -> None:
    """Model strings become specs, the base URL loses its trailing slash, defaults apply."""
    loaded = load_job(write(tmp_path, GOOD), environ={})
    job = loaded.job
    assert [m.name for m in job.models] == ["gpt-4o-mini", "sonnet"]
    assert job.models[1].params == {"temperature": 0.2}
    assert job.provider.base_url == "https://aihubmix.com/v1"  # type: ignore[union-attr]
    assert job.limits.concurrency == 32
    assert len(loaded.sha256) == 64


def test_mock_shorthand(tmp_path: Path) -> None:
    """`provider: mock` selects the built-in gateway."""
    loaded = load_job(
        write(
            tmp_path,
            GOOD.replace(
                "provider:\n  base_url: https://aihubmix.com/v1/\n  api_key_env: MY_KEY\n",
                "provider: mock\n",
            ),
        ),
        environ={},
    )
    assert isinstance(loaded.job.provider, MockProvider)


def test_unknown_key_names_line_and_suggests(tmp_path: Path) -> None:
    """A misspelt key is refused with its line and the close known key."""
    message = error_of(
        tmp_path, GOOD.replace("\nparams: {temperature: 0", "\nparms: {temperature: 0")
    )
    assert message.startswith(f"{tmp_path / 'job.yaml'}:14: parms: unknown key 'parms'")
    assert "did you mean 'params'?" in message


def test_nested_unknown_key(tmp_path: Path) -> None:
    """A misspelt nested key names its full path and line."""
    message = error_of(tmp_path, GOOD.replace("    alias: sonnet", "    alais: sonnet"))
    assert ":12: models[1].alais: unknown key 'alais'; did you mean 'alias'?" in message


def test_wrong_type_names_field(tmp_path: Path) -> None:
    """A wrong type names the field, its line and the value given."""
    message = error_of(tmp_path, GOOD + "samples: lots\n")
    assert ":17: samples:" in message
    assert "'lots'" in message


def test_missing_required_key(tmp_path: Path) -> None:
    """A missing section is named."""
    message = error_of(
        tmp_path, GOOD.replace("output:\n  path: results/{name}-{date}.parquet\n", "")
    )
    assert "output: this key is required" in message


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    """Broken YAML is reported with its line, not a traceback."""
    message = error_of(tmp_path, GOOD.replace("  - gpt-4o-mini", "  - gpt-4o-mini: [unclosed"))
    assert ":11: YAML syntax error" in message or ":10: YAML syntax error" in message


def test_env_interpolation(tmp_path: Path) -> None:
    """${VAR} and ${VAR:-default} are filled from the environment (in paths)."""
    text = GOOD.replace("data.parquet", "${DATA_DIR}/data.parquet").replace(
        "results/{name}", "${OUT_DIR:-results}/{name}"
    )
    loaded = load_job(write(tmp_path, text), environ={"DATA_DIR": "/srv"})
    assert loaded.job.input.path == "/srv/data.parquet"
    # Relative paths are the job file's folder's (issue 18).
    assert loaded.job.output.path == str(tmp_path / "results/{name}-{date}.parquet")


def test_env_interpolation_unset(tmp_path: Path) -> None:
    """An unset variable without default is an error at its line."""
    message = error_of(tmp_path, GOOD.replace("data.parquet", "${DATA_DIR}/data.parquet"))
    assert ":6: input.path: environment variable DATA_DIR is not set" in message


def test_key_comes_from_environment_only(tmp_path: Path) -> None:
    """The key is read from the named variable; unset is a clear error."""
    job = load_job(write(tmp_path, GOOD), environ={}).job
    assert resolve_api_key(job, {"MY_KEY": "sk-abc"}) == "sk-abc"
    with pytest.raises(JobError, match="MY_KEY is not set"):
        resolve_api_key(job, {})


def test_duplicate_alias_refused(tmp_path: Path) -> None:
    """Two models with one name cannot be told apart in results."""
    message = error_of(tmp_path, GOOD.replace("alias: sonnet", "alias: gpt-4o-mini"))
    assert "models: models[1] is named 'gpt-4o-mini' like models[0]" in message


def test_url_without_scheme(tmp_path: Path) -> None:
    """A base URL must say http(s)."""
    message = error_of(tmp_path, GOOD.replace("https://aihubmix.com/v1/", "aihubmix.com/v1"))
    assert ":3: provider.base_url:" in message
    assert "with its scheme" in message


def test_authorization_header_refused(tmp_path: Path) -> None:
    """A key may not be smuggled into the job as a header."""
    text = GOOD.replace(
        "  api_key_env: MY_KEY\n",
        "  api_key_env: MY_KEY\n  headers: {Authorization: Bearer sk-x}\n",
    )
    message = error_of(tmp_path, text)
    assert "api_key_env instead" in message
    assert "sk-x" not in message


def test_mock_settings_error_path(tmp_path: Path) -> None:
    """Errors under provider.mock keep their full path."""
    text = GOOD.replace(
        "provider:\n  base_url: https://aihubmix.com/v1/\n  api_key_env: MY_KEY\n",
        "provider:\n  mock:\n    latency_ms: -5\n",
    )
    message = error_of(tmp_path, text)
    assert ":4: provider.mock.latency_ms:" in message


@pytest.mark.parametrize(
    "url",
    [
        "HTTP://127.0.0.1:8080/v1",
        "http://0x7f000001:8080/v1",
        "http://2130706433/v1",
        "http://127.1/v1",
        "http://[::ffff:127.0.0.1]:9/v1",
        "http://LOCALHOST:9/v1",
    ],
)
def test_check_base_url_reads_loopback_however_written(url: str) -> None:
    """Integer, hex, short and mapped forms of 127.0.0.1 are loopback; schemes any case."""
    from batchrun.params import check_base_url

    assert check_base_url(url).startswith("http://")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://example.com/v1", "plain http:// to example.com"),
        ("http://0x08080808/v1", "plain http:// to 0x08080808"),
        ("http://134744072/v1", "plain http:// to 134744072"),
        ("https://me:s3cr3t-passw0rd@example.com/v1", "the URL holds credentials"),
        ("https://example.com /v1", "spaces or control characters"),
        ("https://example.com:99999999/v1", "has a malformed port"),
    ],
)
def test_check_base_url_refuses_in_one_line(url: str, expected: str) -> None:
    """What the guard refuses, as one line naming the flag it came from; no password."""
    from batchrun.params import check_base_url

    with pytest.raises(JobError) as info:
        check_base_url(url, field="--base-url")
    message = str(info.value)
    assert message.startswith("--base-url: ") and expected in message
    assert "s3cr3t" not in message and "\n" not in message


def test_yaml_anchor_is_refused_at_its_alias(tmp_path: Path) -> None:
    """Even a harmless alias is refused, at the line of the alias."""
    text = GOOD.replace("params: {temperature: 0, max_tokens: 256}", "params: &p {temperature: 0}")
    text = text.replace("    params: {temperature: 0.2}", "    params: *p")
    message = error_of(tmp_path, text)
    assert ":13: YAML aliases (*p) are not allowed in a job file" in message


def test_yaml_duplicate_nested_key_names_both_lines(tmp_path: Path) -> None:
    """A key given twice inside a mapping is refused at the second, naming the first."""
    text = GOOD.replace("  path: data.parquet\n", "  path: data.parquet\n  path: other.parquet\n")
    message = error_of(tmp_path, text)
    assert ":7: the key 'path' is given twice in one mapping (first on line 6)" in message


def test_env_variables_fill_headers_and_key_file(tmp_path: Path) -> None:
    """Headers and the key file may come from the environment; they are provider fields."""
    text = GOOD.replace(
        "  api_key_env: MY_KEY\n", '  api_key_file: ${KEYS}/key\n  headers: {X-Team: "${TEAM}"}\n'
    )
    job = load_job(write(tmp_path, text), environ={"KEYS": "/run/keys", "TEAM": "red"}).job
    assert job.provider.api_key_file == "/run/keys/key"  # type: ignore[union-attr]
    assert job.provider.headers == {"X-Team": "red"}  # type: ignore[union-attr]


def test_header_value_is_never_quoted(tmp_path: Path) -> None:
    """A bad header value is described without being quoted: headers hold secrets."""
    text = GOOD.replace("  api_key_env: MY_KEY\n", "  headers: {X-Token: [hdr-secret-0987]}\n")
    message = error_of(tmp_path, text)
    assert "provider.headers.X-Token" in message and "hdr-secret-0987" not in message
