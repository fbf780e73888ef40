"""Graders: turning responses into ``score_<name>`` columns.

``apply_scores`` promises one Float64 column per declared score (and a
``score_<name>_reason`` column for judges): 1.0 / 0.0 for pass/fail graders,
the number itself for numeric ones, and null where the score does not apply
(the request failed, or the expected value is missing): never a silent 0.

Graders: ``exact``, ``contains``, ``regex``, ``json_valid``,
``json_schema``, ``numeric`` (with a tolerance), ``wer`` (word error
rate, lower is better), each against an expected column or a literal;
``ndcg`` and ``mrr`` grade the ``ranking`` column against graded relevance
(``ranking_scores.py``); ``judge`` scores come from a judge model (see
``judge.py``) and are only parsed here.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from batchrun.config import ScoreSpec
from batchrun.errors import JobError
from batchrun.ranking_scores import mrr, ndcg, word_error_rate
from batchrun.store import INPUT_PREFIX, write_parquet_atomic

_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
Grader = Callable[[Any, Any, ScoreSpec], float | None]


def score_column(name: str) -> str:
    """The results column of a score."""
    return f"score_{name}"


def last_number(text: str) -> float | None:
    """The last number written in ``text`` (``1,234.5`` counts as 1234.5), or None."""
    matches = _NUMBER.findall(text)
    for candidate in reversed(matches):
        try:
            return float(candidate.replace(",", ""))
        except ValueError:
            continue
    return None


def _normalize(text: str, spec: ScoreSpec) -> str:
    text = text.strip()
    return text.lower() if not spec.case_sensitive else text


def _exact(response: str, expected: Any, spec: ScoreSpec) -> float | None:
    if expected is None:
        return None
    return float(_normalize(response, spec) == _normalize(str(expected), spec))


def _contains(response: str, expected: Any, spec: ScoreSpec) -> float | None:
    if expected is None:
        return None
    return float(_normalize(str(expected), spec) in _normalize(response, spec))


def _regex(response: str, expected: Any, spec: ScoreSpec) -> float | None:
    pattern = spec.pattern if spec.pattern is not None else expected
    if pattern is None:
        return None
    flags = 0 if spec.case_sensitive else re.IGNORECASE
    return float(re.search(str(pattern), response, flags) is not None)


def _parse_json(response: str) -> Any:
    text = response.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    return json.loads(text)


def _json_valid(response: str, expected: Any, spec: ScoreSpec) -> float | None:
    try:
        _parse_json(response)
    except ValueError:
        return 0.0
    return 1.0


def _json_schema(response: str, expected: Any, spec: ScoreSpec) -> float | None:
    schema = spec.json_schema if spec.json_schema is not None else expected
    if schema is None:
        return None
    if isinstance(schema, str):
        schema = json.loads(schema)
    try:
        value = _parse_json(response)
    except ValueError:
        return 0.0
    return float(schema_validator(schema).is_valid(value))


@functools.lru_cache(maxsize=64)
def _cached_validator(schema_json: str) -> Any:
    import jsonschema

    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)


def schema_validator(schema: dict[str, Any]) -> Any:
    """A JSON Schema validator for ``schema`` (built once per distinct schema)."""
    return _cached_validator(json.dumps(schema, sort_keys=True))


def _numeric(response: str, expected: Any, spec: ScoreSpec) -> float | None:
    if expected is None:
        return None
    try:
        target = float(str(expected).replace(",", ""))
    except ValueError:
        return None
    got = last_number(response)
    if got is None:
        return 0.0
    return float(math.isclose(got, target, rel_tol=spec.rel_tolerance, abs_tol=spec.tolerance))


def _wer(response: str, expected: Any, spec: ScoreSpec) -> float | None:
    return None if expected is None else word_error_rate(response, str(expected))


def _ndcg(ranking: Any, expected: Any, spec: ScoreSpec) -> float | None:
    return ndcg(list(ranking), expected)


def _mrr(ranking: Any, expected: Any, spec: ScoreSpec) -> float | None:
    return mrr(list(ranking), expected)


# Graders that read the ``ranking`` column instead of ``response``.
RANKING_GRADERS = frozenset({"ndcg", "mrr"})

GRADERS: dict[str, Grader] = {
    "exact": _exact,
    "contains": _contains,
    "regex": _regex,
    "json_valid": _json_valid,
    "json_schema": _json_schema,
    "numeric": _numeric,
    "wer": _wer,
    "ndcg": _ndcg,
    "mrr": _mrr,
}


def grade(spec: ScoreSpec, response: str | None, status: str, expected: Any) -> float | None:
    """One score, or None where it does not apply."""
    if status != "ok" or response is None:
        return None
    if spec.expected_column is None and expected is None:
        expected = spec.expected
    return GRADERS[spec.grader](response, expected, spec)


def apply_scores(results: pl.DataFrame, specs: list[ScoreSpec]) -> pl.DataFrame:
    """``results`` with a ``score_<name>`` column per non-judge spec (replacing any earlier one)."""
    for spec in specs:
        if spec.grader == "judge":
            continue
        column = spec.expected_column
        if column is not None and column not in results.columns:
            column = INPUT_PREFIX + column  # carried under a prefix when it clashed
        if column is not None and column not in results.columns:
            raise JobError(
                f"score {spec.name}: the results have no column {spec.expected_column!r}"
            )
        expected = (
            results.get_column(column).to_list()
            if column is not None
            else [spec.expected] * results.height
        )
        scores = [
            grade(spec, response, status, want)
            for response, status, want in zip(
                results.get_column(
                    "ranking" if spec.grader in RANKING_GRADERS else "response"
                ).to_list(),
                results.get_column("status").to_list(),
                expected,
                strict=True,
            )
        ]
        results = results.with_columns(pl.Series(score_column(spec.name), scores, dtype=pl.Float64))
    return results


def check_structured(text: str | None, schema: dict[str, Any]) -> tuple[str | None, bool]:
    """A structured answer parsed (as compact JSON) and checked against its schema."""
    if text is None:
        return None, False
    try:
        value = _parse_json(text)
    except ValueError:
        return None, False
    valid = schema_validator(schema).is_valid(value) if schema else True
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")), valid


def score_file(output: Path, specs: list[ScoreSpec]) -> int:
    """Add or refresh the ``score_<name>`` columns of a results file; the rows scored."""
    graded = [spec for spec in specs if spec.grader != "judge"]
    if not graded or not output.exists():
        return 0
    frame = pl.read_parquet(output)
    frame = apply_scores(frame, graded)
    write_parquet_atomic(frame, output)
    return frame.height


def check_expected_columns(specs: list[ScoreSpec], columns: list[str]) -> None:
    """``JobError`` if a score reads a column the input does not have."""
    for index, spec in enumerate(specs):
        if spec.expected_column is not None and spec.expected_column not in columns:
            raise JobError(
                f"scores[{index}].expected_column: column {spec.expected_column!r} is not in "
                f"the input (columns: {', '.join(columns)})"
            )


def parse_judgement(text: str | None, low: float, high: float) -> tuple[float | None, str | None]:
    """A judge's score and reason from its answer: JSON ``{"score", "reason"}`` or prose."""
    if not text:
        return None, None
    try:
        data = _parse_json(text)
        if isinstance(data, dict) and "score" in data:
            given = float(data["score"])
            reason = data.get("reason")
            return (given if low <= given <= high else None), (str(reason) if reason else None)
    except (ValueError, TypeError):
        pass
    match = re.search(r"score\s*[:=]?\s*([-+]?\d+(?:\.\d+)?)", text, re.IGNORECASE)
    value: float | None = float(match.group(1)) if match else last_number(text)
    if value is None or not low <= value <= high:
        return None, text.strip()[:500]
    return value, text.strip()[:500]
