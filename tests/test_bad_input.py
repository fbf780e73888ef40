"""Bad input: one clear line naming what is wrong, exit code 2, and not one request sent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from conftest import KEY_ENV, invoke, job_dict, make_prompts

from batchrun.gateway import GatewayThread

Job = dict[str, Any]


def with_input(path: str, writer: Callable[[Path], object], **extra: Any) -> Callable[[Job], None]:
    def setup(job: Job) -> None:
        writer(Path(path))
        job["input"] = {"path": path, **extra}

    return setup


def set_key(*keys_and_value: Any) -> Callable[[Job], None]:
    *keys, value = keys_and_value

    def setup(job: Job) -> None:
        target = job
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return setup


def drop(key: str) -> Callable[[Job], None]:
    return lambda job: job.pop(key)


def env_unset(job: Job) -> None:
    job["provider"]["api_key_env"] = "BATCHRUN_NOT_SET_ANYWHERE"


def occupy_output_folder(job: Job) -> None:
    Path("blocked").write_text("a file where the output folder should be")
    job["output"] = {"path": "blocked/results.parquet"}


# (name, how to break the job, what the one line must say)
CASES: list[tuple[str, Callable[[Job], None], str]] = [
    (
        "wrong-type",
        set_key("samples", "lots"),
        "job.yaml:27: samples: Input should be a valid integer",
    ),
    (
        "unknown-key",
        lambda j: j.update(parms={}),
        "parms: unknown key 'parms'; did you mean 'params'?",
    ),
    (
        "misspelt-nested",
        set_key("limits", "concurency", 4),
        "limits.concurency: unknown key 'concurency'; did you mean 'concurrency'?",
    ),
    (
        "misspelt-provider",
        lambda j: j["provider"].update(base_ulr="x"),
        "provider.base_ulr: unknown key 'base_ulr'; did you mean 'base_url'?",
    ),
    (
        "missing-input-file",
        set_key("input", "path", "nowhere.parquet"),
        "job.yaml:6: input.path: nowhere.parquet does not exist",
    ),
    (
        "ragged-csv",
        with_input(
            "ragged.csv", lambda p: p.write_text("id,question\n1,a\n2,b,c\n"), id_column="id"
        ),
        "ragged.csv: rows have differing numbers of fields",
    ),
    (
        "bad-encoding",
        with_input(
            "latin.csv",
            lambda p: p.write_bytes("id,question\n1,caf\xe9\n".encode("latin-1")),
            id_column="id",
        ),
        "latin.csv: not UTF-8 text",
    ),
    (
        "empty-dataset",
        with_input("empty.csv", lambda p: p.write_text("id,question\n"), id_column="id"),
        "empty.csv has no rows",
    ),
    (
        "duplicate-ids",
        with_input("dups.csv", lambda p: p.write_text("id,question\n1,a\n1,b\n"), id_column="id"),
        "input.id_column: column 'id' repeats the id '1'",
    ),
    (
        "null-ids",
        with_input("nulls.csv", lambda p: p.write_text("id,question\n1,a\n,b\n"), id_column="id"),
        "column 'id' has 1 empty value(s), the first in data row 2",
    ),
    (
        "missing-id-column",
        set_key("input", "id_column", "key"),
        "input.id_column: column 'key' is not in prompts.parquet",
    ),
    (
        "missing-column",
        set_key("prompt", "user", "{{ questoin }}"),
        "prompt.user: the template uses {{ questoin }} but the input has no column 'questoin'",
    ),
    (
        "template-syntax",
        set_key("prompt", "user", "{{ question "),
        "prompt.user: template syntax error",
    ),
    (
        "undefined-in-system",
        set_key("prompt", "system", "Be {{ tone }}."),
        "prompt.system: the template uses {{ tone }}",
    ),
    (
        "sandbox-escape",
        set_key("prompt", "user", "{{ ''.__class__.__mro__ }}"),
        "prompt.user: the template reaches for",
    ),
    ("no-user-turn", set_key("prompt", {"system": "hi"}), "prompt: give either 'user'"),
    ("empty-models", set_key("models", []), "models: List should have at least 1 item"),
    ("duplicate-model-ids", set_key("models", ["m", "m"]), "models[1] is named 'm' like models[0]"),
    (
        "duplicate-aliases",
        set_key("models", [{"id": "a", "alias": "x"}, {"id": "b", "alias": "x"}]),
        "models[1] is named 'x' like models[0]",
    ),
    (
        "same-request-twice",
        set_key("models", [{"id": "a", "alias": "x"}, {"id": "a", "alias": "y"}]),
        "models[1] sends exactly what models[0] sends",
    ),
    (
        "unset-key-variable",
        env_unset,
        "provider.api_key_env: the environment variable BATCHRUN_NOT_SET_ANYWHERE is not set",
    ),
    (
        "zero-concurrency",
        set_key("limits", "concurrency", 0),
        "limits.concurrency: Input should be greater than 0",
    ),
    ("negative-rpm", set_key("limits", "rpm", -5), "limits.rpm: Input should be greater than 0"),
    (
        "zero-timeout",
        set_key("limits", "timeout_s", 0),
        "limits.timeout_s: Input should be greater than 0",
    ),
    (
        "negative-model-rpm",
        set_key("models", [{"id": "a", "rpm": -1}]),
        "models[0].rpm: Input should be greater than 0",
    ),
    ("unwritable-output", occupy_output_folder, "output.path: cannot write to the folder blocked"),
    (
        "url-without-scheme",
        set_key("provider", "base_url", "aihubmix.com/v1"),
        "provider.base_url: 'aihubmix.com/v1' is not an http(s) URL",
    ),
    (
        "insecure-http",
        set_key("provider", "base_url", "http://gateway.example.com/v1"),
        "plain http:// to gateway.example.com would send the key unencrypted",
    ),
    (
        "not-parquet",
        with_input("fake.parquet", lambda p: p.write_text("id,question\n1,a\n"), id_column="id"),
        "fake.parquet: not a readable Parquet file",
    ),
    (
        "output-not-parquet",
        set_key("output", {"path": "out/results.csv"}),
        "output.path: 'out/results.csv' should end in .parquet",
    ),
    (
        "unknown-placeholder",
        set_key("output", {"path": "out/{when}.parquet"}),
        "output.path: unknown placeholder {when}",
    ),
    (
        "all-null-column",
        with_input(
            "blank.parquet",
            lambda p: pl.DataFrame(
                {"id": ["1", "2"], "question": [None, None]},
                schema={"id": pl.String, "question": pl.String},
            ).write_parquet(p),
            id_column="id",
        ),
        "column 'question' is empty in every row",
    ),
    (
        "key-in-headers",
        set_key("provider", "headers", {"Authorization": "Bearer sk-inline"}),
        "name its environment variable in api_key_env instead",
    ),
    (
        "missing-key-file",
        lambda j: (
            j["provider"].pop("api_key_env"),
            j["provider"].update(api_key_file="nokey.txt"),
        ),
        "provider.api_key_file: cannot read nokey.txt",
    ),
    (
        "negative-price",
        set_key("prices", {"a": {"input": -1, "output": 1}}),
        "prices.a.input: Input should be greater than or equal to 0",
    ),
    (
        "misspelt-price",
        set_key("prices", {"a": {"inptu": 1, "output": 1}}),
        "unknown key 'inptu'; did you mean 'input'?",
    ),
    (
        "unset-env-in-file",
        set_key("input", "path", "${DATA_DIR_UNSET}/p.parquet"),
        "input.path: environment variable DATA_DIR_UNSET is not set",
    ),
    ("missing-output", drop("output"), "output: this key is required"),
    ("zero-samples", set_key("samples", 0), "samples: Input should be greater than or equal to 1"),
]


@pytest.mark.parametrize(("setup", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_job(gateway: GatewayThread, setup: Callable[[Job], None], expected: str) -> None:
    """The job is refused before anything is sent, in one line that names the fault."""
    make_prompts(Path("prompts.parquet"))
    job = job_dict(gateway.url)
    setup(job)
    Path("job.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    for args in (["run", "job.yaml"], ["validate", "job.yaml"], ["run", "job.yaml", "--dry-run"]):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("batchrun: error: ")
        assert expected in lines[0]
        assert "job.yaml" in lines[0] or expected.split(":")[0] in lines[0]
        assert "Traceback" not in result.output
    assert gateway.gateway.stats.all_requests == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nprovider: [unclosed\n", "job.yaml:3: YAML syntax error"),
        ("- just\n- a list\n", "job.yaml:1: the job file should be a mapping"),
        ("name: x\n\tprovider: mock\n", "YAML syntax error"),
    ],
)
def test_broken_yaml(gateway: GatewayThread, text: str, expected: str) -> None:
    """YAML that does not parse is one line with the file and line."""
    Path("job.yaml").write_text(text)
    result = invoke("run", "job.yaml")
    assert result.exit_code == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert gateway.gateway.stats.all_requests == 0


def test_missing_job_file() -> None:
    """A job file that is not there is named."""
    result = invoke("run", "nope.yaml")
    assert result.exit_code == 2
    assert "nope.yaml: no such job file" in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--shard", "3/2", "--shard: '3/2' should be I/N"),
        ("--max-failures", "lots", "--max-failures: 'lots' is neither"),
    ],
)
def test_bad_options(gateway: GatewayThread, option: str, value: str, expected: str) -> None:
    """Bad command-line values are refused before anything is sent."""
    make_prompts(Path("prompts.parquet"))
    Path("job.yaml").write_text(yaml.safe_dump(job_dict(gateway.url)))
    result = invoke("run", "job.yaml", option, value)
    assert result.exit_code == 2 and expected in result.stderr
    assert gateway.gateway.stats.all_requests == 0


def test_debug_shows_the_traceback(gateway: GatewayThread) -> None:
    """--debug adds the traceback; without it there is none."""
    Path("job.yaml").write_text(yaml.safe_dump(job_dict(gateway.url, samples="lots")))
    assert "Traceback" not in invoke("run", "job.yaml").stderr
    assert "Traceback" in invoke("run", "job.yaml", "--debug").stderr


def test_validate_prints_plan_with_cost(gateway: GatewayThread) -> None:
    """validate prints rows x models x samples, tokens and a cost range from the prices."""
    make_prompts(Path("prompts.parquet"))
    job = job_dict(gateway.url, prices={"model-a": {"input": 1.0, "output": 2.0}})
    Path("job.yaml").write_text(yaml.safe_dump(job))
    result = invoke("validate", "job.yaml")
    assert result.exit_code == 0
    assert "plan: 6 rows x 2 models x 1 samples = 12 requests" in result.stdout
    assert "maximum output tokens: 384" in result.stdout
    assert "estimated cost: $" in result.stdout
    assert "no price for: b" in result.stdout
    assert gateway.gateway.stats.all_requests == 0


def test_validate_shows_plan_then_flags_unset_key(
    gateway: GatewayThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """validate still prints the plan when the key is unset, then fails on it."""
    monkeypatch.delenv(KEY_ENV)
    make_prompts(Path("prompts.parquet"))
    Path("job.yaml").write_text(yaml.safe_dump(job_dict(gateway.url)))
    result = invoke("validate", "job.yaml")
    assert result.exit_code == 2
    assert "plan: 6 rows" in result.stdout
    assert f"{KEY_ENV} is not set" in result.stderr


def test_schema_describes_the_job() -> None:
    """batchrun schema prints a JSON Schema that forbids unknown keys."""
    import json

    result = invoke("schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "batchrun job"
    assert {"name", "provider", "input", "prompt", "models", "output"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
