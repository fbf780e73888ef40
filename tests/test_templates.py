"""Rendering rows into messages with sandboxed Jinja2."""

from __future__ import annotations

import pytest

from batchrun.config import PromptSpec, Turn
from batchrun.errors import JobError
from batchrun.templates import compile_prompt


def test_system_and_user() -> None:
    """system + user render in order with the row's values."""
    template = compile_prompt(PromptSpec(system="Be {{ tone }}.", user="Q: {{ q }}"))
    assert template.variables == {"tone", "q"}
    assert template.render({"tone": "brief", "q": "2+2"}) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q: 2+2"},
    ]


def test_messages_list() -> None:
    """A full list of turns renders each turn."""
    spec = PromptSpec(
        messages=[
            Turn(role="user", content="{{ a }}"),
            Turn(role="assistant", content="ok"),
            Turn(role="user", content="{{ b | upper }}"),
        ]
    )
    assert [m["content"] for m in compile_prompt(spec).render({"a": "x", "b": "y"})] == [
        "x",
        "ok",
        "Y",
    ]


def test_missing_column_is_named() -> None:
    """A variable with no column is refused before anything renders."""
    template = compile_prompt(PromptSpec(user="{{ question }} {{ extra }}"))
    with pytest.raises(JobError, match=r"\{\{ extra \}\} but the input has no column 'extra'"):
        template.check_columns(["question"], "the input")


def test_syntax_error() -> None:
    """A broken template names its field."""
    with pytest.raises(JobError, match=r"prompt\.user: template syntax error"):
        compile_prompt(PromptSpec(user="{{ question "))


@pytest.mark.parametrize(
    "source", ["{{ ''.__class__ }}", "{{ q.__class__.__mro__ }}", "{{ q['__class__'] }}"]
)
def test_sandbox_refuses_internals(source: str) -> None:
    """Reaching for Python internals is refused at compile time."""
    with pytest.raises(JobError, match="Python internal"):
        compile_prompt(PromptSpec(user=source))


def test_sandbox_refuses_unsafe_calls() -> None:
    """The sandbox refuses a huge range when rendering, as one clear error."""
    template = compile_prompt(PromptSpec(user="{{ range(10**9) | length }}"))
    with pytest.raises(JobError, match="cannot be rendered"):
        template.render({"q": "x"}, "p1")
