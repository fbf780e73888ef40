"""Graders: each against hand-made responses; null where a score does not apply."""

from __future__ import annotations

import polars as pl
import pytest

from batchrun.config import ScoreSpec
from batchrun.scoring import apply_scores, grade, last_number, parse_judgement


def spec(**kwargs: object) -> ScoreSpec:
    return ScoreSpec.model_validate({"name": "s", **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "response", "expected", "score"),
    [
        ({"grader": "exact", "expected_column": "e"}, " Paris ", "paris", 1.0),
        (
            {"grader": "exact", "expected_column": "e", "case_sensitive": True},
            "Paris",
            "paris",
            0.0,
        ),
        ({"grader": "contains", "expected_column": "e"}, "It is Paris.", "paris", 1.0),
        ({"grader": "contains", "expected": "lyon"}, "It is Paris.", None, 0.0),
        ({"grader": "regex", "pattern": r"\b\d{4}\b"}, "In 1969 it landed", None, 1.0),
        ({"grader": "regex", "pattern": r"^no$"}, "yes", None, 0.0),
        ({"grader": "json_valid"}, '```json\n{"a": 1}\n```', None, 1.0),
        ({"grader": "json_valid"}, "{a: 1}", None, 0.0),
        (
            {
                "grader": "json_schema",
                "json_schema": {
                    "type": "object",
                    "required": ["a"],
                    "properties": {"a": {"type": "integer"}},
                },
            },
            '{"a": 3}',
            None,
            1.0,
        ),
        (
            {"grader": "json_schema", "json_schema": {"type": "object", "required": ["a"]}},
            '{"b": 3}',
            None,
            0.0,
        ),
        ({"grader": "numeric", "expected_column": "e"}, "The answer is 1,234.", "1234", 1.0),
        (
            {"grader": "numeric", "expected_column": "e", "tolerance": 0.05},
            "about 3.14",
            "3.1416",
            1.0,
        ),
        ({"grader": "numeric", "expected_column": "e"}, "The answer is 41.", "42", 0.0),
        ({"grader": "numeric", "expected_column": "e"}, "no idea", "42", 0.0),
    ],
)
def test_graders(kwargs: dict[str, object], response: str, expected: object, score: float) -> None:
    """Each grader gives 1 for a pass and 0 for a fail."""
    assert grade(spec(**kwargs), response, "ok", expected) == score


def test_not_applicable_is_null() -> None:
    """A failed request, or a missing expected value, gives null, never 0."""
    numeric = spec(grader="numeric", expected_column="e")
    assert grade(numeric, None, "error", "42") is None
    assert grade(numeric, "42", "ok", None) is None


def test_apply_scores_adds_typed_columns() -> None:
    """score_<name> is Float64 with nulls where not applicable."""
    frame = pl.DataFrame(
        {
            "response": ["The answer is 4.", None, "5"],
            "status": ["ok", "error", "ok"],
            "expected": ["4", "4", None],
        }
    )
    scored = apply_scores(frame, [spec(name="right", grader="numeric", expected_column="expected")])
    assert scored.schema["score_right"] == pl.Float64
    assert scored["score_right"].to_list() == [1.0, None, None]


def test_last_number() -> None:
    """The last number counts, with thousands separators."""
    assert last_number("3 apples and 1,250.5 pears") == 1250.5
    assert last_number("none") is None


@pytest.mark.parametrize(
    ("text", "score", "reason"),
    [
        ('{"score": 8, "reason": "good"}', 8.0, "good"),
        ('```json\n{"score": 3, "reason": "weak"}\n```', 3.0, "weak"),
        ("Score: 7 - clear and right", 7.0, "Score: 7 - clear and right"),
        ('{"score": 42, "reason": "off the scale"}', None, "off the scale"),
        ("", None, None),
    ],
)
def test_parse_judgement(text: str, score: float | None, reason: str | None) -> None:
    """A judge's score within the scale, and its reason; out of scale is null."""
    assert parse_judgement(text, 1, 10) == (score, reason)


def test_grader_needs_what_it_compares() -> None:
    """A numeric grader without an expected value is refused at validation."""
    with pytest.raises(ValueError, match="needs expected_column"):
        spec(grader="numeric")
    with pytest.raises(ValueError, match="needs model"):
        spec(grader="judge", rubric="x")
