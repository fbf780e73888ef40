"""``batchrun schema``: it accepts what the job loader accepts, and says what each field is.

Issue 17, finding 8: the schema refused ``provider: mock`` and ``models:
[string]``, so every shipped example failed in an editor, and almost no
field had a description.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import invoke

from batchrun.config import load_job
from batchrun.job_schema import field_reference, job_schema

REPO = Path(__file__).resolve().parent.parent
JOBS = sorted((REPO / "jobs").glob("*.yaml"))


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(invoke("schema").stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def minimal(**overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "t",
        "provider": "mock",
        "input": {"path": "prompts.parquet"},
        "prompt": {"user": "{{ question }}"},
        "models": ["gpt-4o-mini"],
        "output": {"path": "out.parquet"},
    }
    job.update(overrides)
    return job


def test_finding8_every_shipped_job_passes_the_schema() -> None:
    """Each file in jobs/ is valid against ``batchrun schema``, as it is for the loader."""
    check = validator()
    assert len(JOBS) >= 11
    for path in JOBS:
        errors = [e.message for e in check.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], path.name
        load_job(path, environ={"AIHUBMIX_API_KEY": "x"})


@pytest.mark.parametrize(
    "job",
    [
        minimal(),
        minimal(provider={"mock": {"latency_ms": 5}}),
        minimal(provider={"base_url": "https://gw.example/v1", "api_key_env": "K"}),
        minimal(models=["a", {"id": "a", "alias": "a-resp", "api": "responses"}]),
    ],
    ids=["mock-shorthand", "mock-settings", "http", "mixed-models"],
)
def test_finding8_the_schema_accepts_every_form_the_loader_accepts(
    job: dict[str, Any], tmp_path: Path
) -> None:
    """The shorthand forms pass both the loader and the schema."""
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    load_job(path)
    assert list(validator().iter_errors(job)) == []


def test_the_schema_still_refuses_what_the_loader_refuses() -> None:
    """An unknown key, or a provider that is neither mock nor a gateway, is an error."""
    check = validator()
    assert list(check.iter_errors(minimal(extra=1)))
    assert list(check.iter_errors(minimal(provider="openai")))
    assert list(check.iter_errors(minimal(models=[3])))


def _properties(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = [("job." + name, value) for name, value in schema["properties"].items()]
    for model, definition in schema["$defs"].items():
        found += [(f"{model}.{name}", v) for name, v in definition.get("properties", {}).items()]
    return found


def test_finding8_every_field_has_a_description() -> None:
    """Every property of the job and of each part of it has a description for hovers."""
    properties = _properties(job_schema())
    assert len(properties) > 70
    missing = [name for name, value in properties if not value.get("description")]
    assert missing == []


def test_docs_and_schema_share_one_source() -> None:
    """``batchrun schema --markdown`` prints the field reference with the schema's texts."""
    printed = invoke("schema", "--markdown").stdout
    assert printed == field_reference()
    for _, value in _properties(job_schema()):
        assert value["description"] in printed
