"""Pydantic's validation errors told as one line: ``file:line: field: what to do``.

``describe`` promises a single redacted line: the first error (a misspelt
key before the "missing" it causes), with a close match for an unknown key
and at most a short excerpt of a bad value. Values of fields that may hold
secrets (the provider's key variable, key file, headers, URL) are never
quoted. A check of the whole job that names the entry it is about first
(``models[1] sends exactly ...``) is placed at that entry's line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from batchrun.redact import excerpt, redact
from batchrun.yamlload import dotted, line_of


def describe(
    exc: ValidationError,
    path: Path,
    root: yaml.Node | None,
    schema: type[BaseModel],
    by_name: Mapping[str, type[BaseModel]],
) -> str:
    """Turn pydantic's first error into ``file:line: field: what to do``."""
    errors = exc.errors()
    # A misspelt key also makes the right one "missing": name the misspelling first.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    named = () if first["loc"] else _named_entry(str(first["msg"]))
    loc = _clean_loc(first["loc"]) or named
    line = line_of(root, loc)
    field = dotted(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1], schema, by_name)
        known = sorted(parent.model_fields) if parent else []
        unknown = str(loc[-1])
        close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        message = f"unknown key {unknown!r}; {hint}"
    elif first["type"] == "missing":
        message = "this key is required"
    else:
        message = str(first["msg"]).removeprefix("Value error, ")
        plain = first["type"] not in {"value_error", "assertion_error"}
        if plain and "input" in first and not _holds_secret(loc):
            message += f" (got {excerpt(first['input'])})"
    others = [dotted(_clean_loc(e["loc"])) or "(top level)" for e in errors if e is not first]
    more = ""
    if others:
        shown = ", ".join(others[:6]) + (", ..." if len(others) > 6 else "")
        kind = "missing" if all(e["type"] == "missing" for e in errors) else "to fix"
        more = f" (and {len(others)} more {kind}: {shown})"
    where = f"{path}:{line}:" if named else f"{path}:{line}: {field}:"  # the message names it
    return redact(f"{where} {message}{more}")


def _named_entry(message: str) -> tuple[str | int, ...]:
    """``("models", 1)`` for a job-wide message that starts with ``models[1]``."""
    match = re.match(r"^(?:Value error, )?([a-z_]+)\[(\d+)\] ", message)
    return (match.group(1), int(match.group(2))) if match else ()


def _holds_secret(loc: Sequence[str | int]) -> bool:
    """Whether the field at ``loc`` may hold a secret, so its value is never quoted."""
    return len(loc) >= 2 and loc[0] == "provider" and loc[1] in _SECRET_FIELDS


_SECRET_FIELDS = frozenset({"api_key_env", "api_key_file", "headers", "base_url"})


def _clean_loc(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """Drop the union tags pydantic puts into locations (``provider.http.base_url``)."""
    parts = tuple(loc)
    if len(parts) >= 2 and parts[0] == "provider" and parts[1] in ("mock", "http"):
        return (parts[0], *parts[2:])
    return parts


def _model_at(
    loc: Sequence[str | int], schema: type[BaseModel], by_name: Mapping[str, type[BaseModel]]
) -> type[BaseModel] | None:
    """The pydantic model that sits at a location of the job, for key suggestions."""
    model: type[BaseModel] | None = schema
    skip_key = False
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        if skip_key:  # a key of a mapping field such as prices: {model: ...}
            skip_key = False
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _model_of(field.annotation, part, by_name)
        skip_key = part in _MAPPING_FIELDS
    return model


_MAPPING_FIELDS = frozenset({"prices"})


def _model_of(
    annotation: Any, name: str, by_name: Mapping[str, type[BaseModel]]
) -> type[BaseModel] | None:
    if name in by_name:
        return by_name[name]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None
