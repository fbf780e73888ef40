"""The ``scores`` entries of a job: which grader, against what, and how a judge is asked.

Split from ``config.py`` (which re-exports ``ScoreSpec``) to keep that module
short; the rules are the job loader's, checked when the job is read.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from batchrun.section import JobSection


class ScoreSpec(JobSection):
    """One score computed from every response: a grader against an expected value."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]
    """The score's name; its column is score_<name>."""
    grader: Literal[
        "exact",
        "contains",
        "regex",
        "json_valid",
        "json_schema",
        "numeric",
        "judge",
        "wer",
        "ndcg",
        "mrr",
    ]
    """How the response is scored."""
    expected_column: str | None = None
    """The input column holding the expected answer."""
    expected: str | float | int | None = None
    """The expected answer, the same for every row."""
    pattern: str | None = None
    """The regular expression the regex grader looks for."""
    json_schema: dict[str, Any] | None = None
    """The JSON Schema the json_schema grader checks the response against."""
    tolerance: Annotated[float, Field(ge=0)] = 1e-9
    """The absolute difference the numeric grader accepts."""
    rel_tolerance: Annotated[float, Field(ge=0)] = 0.0
    """The relative difference the numeric grader accepts."""
    case_sensitive: bool = False
    """Whether exact, contains and regex compare case."""
    model: str | None = None
    """The judge model's id (grader: judge), on the same gateway."""
    rubric: str | None = None
    """The judge's prompt, a template over the input columns and response."""
    scale: tuple[float, float] = (1.0, 10.0)
    """The judge's [low, high] score range."""

    @model_validator(mode="after")
    def _complete(self) -> ScoreSpec:
        needs_expected = {"exact", "contains", "numeric", "wer", "ndcg", "mrr"}
        has_expected = self.expected_column is not None or self.expected is not None
        if self.grader in needs_expected and not has_expected:
            raise ValueError(
                f"the {self.grader} grader needs expected_column (a column of the input) "
                "or expected (a literal)"
            )
        if self.grader == "regex" and self.pattern is None and self.expected_column is None:
            raise ValueError("the regex grader needs pattern or expected_column")
        if self.grader == "json_schema" and self.json_schema is None and not has_expected:
            raise ValueError("the json_schema grader needs json_schema or expected_column")
        if self.grader == "judge" and (self.model is None or self.rubric is None):
            raise ValueError("the judge grader needs model (the judge's id) and rubric")
        if self.scale[0] >= self.scale[1]:
            raise ValueError("scale should be [low, high] with low < high")
        return self
