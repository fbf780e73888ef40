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


def test_column_rendering_matches_jinja() -> None:
    """The vectorised path gives byte for byte the messages Jinja and json.dumps give."""
    import json

    import polars as pl

    values = ['a"b', "back\\slash", "new\nline", "tab\t", "ctrl\x01\x1f", "uni é 中", "😀", None]
    frame = pl.DataFrame({"q": values, "n": list(range(len(values)))})
    spec = PromptSpec(system="System {{ n }}.", user="Q: {{ q }} ({{ n }})\n")
    template = compile_prompt(spec)
    fast = template.render_columns(frame)
    assert fast is not None
    messages, prompts = fast
    for row, encoded, prompt in zip(frame.iter_rows(named=True), messages, prompts, strict=True):
        slow = template.render(row)
        assert encoded == json.dumps(slow, ensure_ascii=False, separators=(",", ":"))
        assert prompt == slow[-1]["content"]


def test_column_rendering_declines_filters_and_floats() -> None:
    """Filters, control flow or float columns go through Jinja row by row."""
    import polars as pl

    frame = pl.DataFrame({"q": ["x"], "f": [1.5]})
    assert compile_prompt(PromptSpec(user="{{ q | upper }}")).render_columns(frame) is None
    assert (
        compile_prompt(PromptSpec(user="{% if q %}{{ q }}{% endif %}")).render_columns(frame)
        is None
    )
    assert compile_prompt(PromptSpec(user="{{ f }}")).render_columns(frame) is None


def _jinja_pieces(source: str) -> tuple[tuple[bool, str], ...] | str | None:
    """What Jinja's own parser makes of ``source``: pieces, None, or "syntax error"."""
    import jinja2

    from batchrun.templates import _environment, _parsed_pieces

    try:
        tree = _environment().parse(source)
    except jinja2.TemplateSyntaxError:
        return "syntax error"
    return _parsed_pieces(tree)


def test_plain_templates_are_read_as_jinja_reads_them() -> None:
    """Recognised without Jinja, a template gives exactly Jinja's pieces; never one Jinja refuses.

    Random templates from the characters that matter to Jinja's lexer.
    """
    import random

    from batchrun.templates import plain_pieces

    tokens = [
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        " ",
        "x",
        "y_1",
        "\n",
        "\r\n",
        "\r",
        "-",
        "+",
        "|",
        ".",
        "true",
        "None",
        "if",
        "Q: ",
        "{",
        "}",
        "\t",
        "é",
    ]
    rng = random.Random(7)
    samples = [
        "{{ question }}",
        "Q: {{q}} and {{ x }}\n",
        "a\r\nb{{ y }}\n\n",
        "}} {{ a }} {",
        "{{ x }}{{ y }}",
    ] + ["".join(rng.choice(tokens) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    plain = 0
    for source in samples:
        fast = plain_pieces(source)
        if fast is not None:
            plain += 1
            assert fast == _jinja_pieces(source), repr(source)
    assert plain > 300  # the sample exercises the plain path, not only refusals


def test_plain_template_renders_without_jinja() -> None:
    """A job of plain templates never imports Jinja (start-up time), yet renders the same."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys, polars as pl\n"
        "from batchrun.config import PromptSpec\n"
        "from batchrun.templates import compile_prompt\n"
        "t = compile_prompt(PromptSpec(system='Be brief.', user='Q: {{ q }}'))\n"
        "m, p = t.render_columns(pl.DataFrame({'q': ['2+2']}))\n"
        "print(json.dumps([m[0], p[0], 'jinja2' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    messages, prompt, imported = json.loads(out.stdout)
    assert json.loads(messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q: 2+2"},
    ]
    assert prompt == "Q: 2+2"
    assert imported is False
    template = compile_prompt(PromptSpec(system="Be brief.", user="Q: {{ q }}"))
    assert template.render({"q": "2+2"}) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q: 2+2"},
    ]


def test_template_reading_no_column_renders_every_row() -> None:
    """A Jinja template that reads no column gives one message per row, not zero rows."""
    import polars as pl

    frame = pl.DataFrame({"prompt_id": ["a", "b", "c"], "q": ["x", "y", "z"]})
    for source in ("{% if true %}hi{% endif %}", "hi"):
        fast = compile_prompt(PromptSpec(system="S", user=source)).render_columns(frame)
        assert fast is not None
        messages, prompts = fast
        assert prompts.to_list() == ["hi"] * 3
        assert (
            messages.to_list()
            == ['[{"role":"system","content":"S"},{"role":"user","content":"hi"}]'] * 3
        )


def test_null_cell_renders_as_empty_text_never_none() -> None:
    """A null value renders as empty text in Jinja and in the vectorised path alike."""
    import polars as pl

    frame = pl.DataFrame({"q": ["x", None], "n": [1, 2]})
    template = compile_prompt(PromptSpec(user="Q: {{ q }} {{ n }}"))
    fast = template.render_columns(frame)
    assert fast is not None and fast[1].to_list() == ["Q: x 1", "Q:  2"]
    jinja = compile_prompt(PromptSpec(user="Q: {{ q | trim }}{% if n %} {{ n }}{% endif %}"))
    assert jinja.render({"q": None, "n": 2})[0]["content"] == "Q:  2"


def test_range_budget_is_per_render() -> None:
    """Loops add up within one row, and the budget starts afresh for the next row."""
    template = compile_prompt(PromptSpec(user="{% for i in range(n) %}.{% endfor %}")).limited(
        10**6
    )
    for _ in range(3):
        assert len(template.render({"n": 900_000})[0]["content"]) == 900_000
    with pytest.raises(JobError, match="refused by the sandbox: the template loops"):
        compile_prompt(
            PromptSpec(
                user="{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}"
            )
        ).render({"n": 2000}, "p9")


def test_str_format_with_a_huge_width_is_refused() -> None:
    """``'{:>999999999}'.format(x)`` and the format filter are bounded like ``%``."""
    for source in ("{{ '{:>999999999}'.format(q) }}", "{{ '%999999999s' | format(q) }}"):
        with pytest.raises(JobError, match="refused by the sandbox: a format with a width"):
            compile_prompt(PromptSpec(user=source)).render({"q": "x"}, "p1")


def test_render_refuses_a_prompt_over_max_chars() -> None:
    """Both render paths name the row whose prompt is over the template's limit."""
    import polars as pl

    template = compile_prompt(PromptSpec(user="{{ q }}")).limited(10)
    frame = pl.DataFrame({"prompt_id": ["ok", "long"], "q": ["short", "x" * 11]})
    with pytest.raises(JobError, match="row 'long': the rendered prompt is 11 characters"):
        template.render_columns(frame)
    with pytest.raises(JobError, match="row 'long': the rendered prompt is 11 characters"):
        template.render({"q": "x" * 11}, "long")
