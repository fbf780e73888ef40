"""Rendering rows into chat messages with sandboxed Jinja2.

``compile_prompt`` promises templates that parse, reach for no Python
internals and use only the dataset's columns; ``PromptTemplate.render``
then turns one row into the messages that are sent, failing loudly
(``JobError``) rather than sending a half-rendered prompt.

Most prompts are text with ``{{ column }}`` in it. Those are recognised
without Jinja (``plain_pieces``, which gives exactly the pieces Jinja's
parser would) and rendered for all rows at once with Polars; Jinja is
imported only for templates that need it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from batchrun.config import PromptSpec
from batchrun.errors import JobError

if TYPE_CHECKING:
    import jinja2
    from jinja2 import nodes
    from jinja2.sandbox import SandboxedEnvironment

Message = dict[str, str]
_PLAIN_DTYPES = (
    pl.String,
    pl.Int8,
    pl.Int16,
    pl.Int32,
    pl.Int64,
    pl.UInt8,
    pl.UInt16,
    pl.UInt32,
    pl.UInt64,
)


def _concat(pieces: tuple[tuple[bool, str], ...]) -> pl.Expr:
    """The text of one turn; a null value renders as Jinja renders it: ``None``."""
    parts = [
        pl.col(text).cast(pl.String).fill_null("None") if is_column else pl.lit(text)
        for is_column, text in pieces
    ]
    return pl.concat_str(parts) if parts else pl.lit("")


def _environment() -> SandboxedEnvironment:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


@dataclass(slots=True)
class _Turn:
    role: str
    where: str
    source: str
    variables: frozenset[str]
    # Text and plain ``{{ column }}`` pieces, when that is all the template is.
    pieces: tuple[tuple[bool, str], ...] | None
    template: jinja2.Template | None = field(default=None)

    def compiled(self) -> jinja2.Template:
        """The Jinja template, compiled the first time it is needed."""
        if self.template is None:
            self.template = _environment().from_string(self.source)
        return self.template


class PromptTemplate:
    """The compiled turns of a job's prompt."""

    def __init__(self, turns: list[_Turn]) -> None:
        self._turns = turns

    @property
    def variables(self) -> frozenset[str]:
        """Every column name the templates read."""
        out: set[str] = set()
        for turn in self._turns:
            out |= turn.variables
        return frozenset(out)

    def check_columns(self, columns: Iterable[str], source: str) -> None:
        """Raise ``JobError`` if a template uses a column the dataset lacks."""
        available = set(columns)
        for turn in self._turns:
            missing = sorted(turn.variables - available)
            if missing:
                raise JobError(
                    f"{turn.where}: the template uses "
                    f"{{{{ {missing[0]} }}}} but {source} has no column {missing[0]!r} "
                    f"(columns: {', '.join(sorted(available))})"
                )

    def render_columns(self, frame: pl.DataFrame) -> tuple[pl.Series, pl.Series] | None:
        """Every row's messages (as JSON) and user prompt at once, or None if not possible.

        Only templates made of text and ``{{ column }}`` over string or integer
        columns qualify; the JSON is byte for byte what ``render`` plus
        ``json.dumps`` would give, so request keys do not depend on the path.
        """
        if any(turn.pieces is None for turn in self._turns):
            return None
        for turn in self._turns:
            assert turn.pieces is not None
            for is_column, name in turn.pieces:
                if is_column and frame.schema[name] not in _PLAIN_DTYPES:
                    return None
        contents = [
            _concat(turn.pieces or ()).alias(f"__turn{i}") for i, turn in enumerate(self._turns)
        ]
        encoded = [
            pl.struct(
                pl.lit(turn.role).alias("role"), content.alias("content")
            ).struct.json_encode()
            for turn, content in zip(self._turns, contents, strict=True)
        ]
        separators = [pl.lit(",")] * (len(encoded) - 1)
        joined = [
            item for pair in zip(encoded, [*separators, pl.lit("")], strict=True) for item in pair
        ]
        messages = pl.concat_str([pl.lit("["), *joined, pl.lit("]")]).alias("messages")
        users = [c for c, t in zip(contents, self._turns, strict=True) if t.role == "user"]
        prompt = (users[-1] if users else pl.lit("")).alias("prompt")
        out = frame.select(messages, prompt)
        return out.get_column("messages"), out.get_column("prompt")

    def render(self, row: Mapping[str, Any], prompt_id: str = "") -> list[Message]:
        """The messages for one row; ``JobError`` when a template cannot render it."""
        import jinja2

        messages: list[Message] = []
        for turn in self._turns:
            try:
                content = turn.compiled().render(row)
            except jinja2.exceptions.SecurityError as exc:
                raise JobError(f"{turn.where}: refused by the sandbox: {exc}") from None
            except jinja2.exceptions.UndefinedError as exc:
                raise JobError(
                    f"{turn.where}: row {prompt_id!r}: {exc.message}; "
                    "check the template against the input columns"
                ) from None
            except Exception as exc:
                raise JobError(
                    f"{turn.where}: row {prompt_id!r} cannot be rendered: {exc}"
                ) from None
            messages.append({"role": turn.role, "content": content})
        return messages


def compile_prompt(spec: PromptSpec) -> PromptTemplate:
    """Parse every turn of the prompt; ``JobError`` on syntax errors or unsafe access."""
    turns: list[_Turn] = []
    for index, turn in enumerate(spec.turns()):
        where = f"prompt.{turn.role}" if spec.messages is None else f"prompt.messages[{index}]"
        pieces = plain_pieces(turn.content)
        if pieces is not None:
            variables = frozenset(text for is_column, text in pieces if is_column)
            turns.append(_Turn(turn.role, where, turn.content, variables, pieces))
        else:
            turns.append(_parsed_turn(turn.role, where, turn.content))
    return PromptTemplate(turns)


def _parsed_turn(role: str, where: str, source: str) -> _Turn:
    """A turn parsed by Jinja: checked for syntax and unsafe access, its columns found."""
    import jinja2
    from jinja2 import meta

    env = _environment()
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise JobError(
            f"{where}: template syntax error on template line {exc.lineno}: {exc.message}"
        ) from None
    _refuse_internals(tree, where)
    variables = frozenset(meta.find_undeclared_variables(tree))
    return _Turn(
        role, where, source, variables, _parsed_pieces(tree), template=env.from_string(tree)
    )


# ``{{ name }}`` with nothing else inside; names Jinja reads as constants or operators
# are left to Jinja.
_PLAIN_VARIABLE = re.compile(r"\{\{[ \t\n]*([A-Za-z_][A-Za-z0-9_]*)[ \t\n]*\}\}")
_NOT_PLAIN_NAMES = frozenset(
    {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is"}
    | {"if", "else", "elif", "for", "recursive"}
)
_NEWLINES = re.compile(r"\r\n|\r|\n")


def plain_pieces(source: str) -> tuple[tuple[bool, str], ...] | None:
    """(is_column, text) pieces of a template of only text and ``{{ name }}``, or None.

    Gives what Jinja's parser would for such a template: newlines made
    ``\\n``, one trailing newline dropped. Anything else Jinja might read
    differently (blocks, comments, filters, whitespace control) gives None.
    """
    text = _NEWLINES.sub("\n", source)
    if text.endswith("\n"):
        text = text[:-1]
    if "{%" in text or "{#" in text:
        return None
    pieces: list[tuple[bool, str]] = []
    position = 0
    for match in _PLAIN_VARIABLE.finditer(text):
        data = text[position : match.start()]
        name = match.group(1)
        if "{{" in data or name in _NOT_PLAIN_NAMES:
            return None
        if data:
            pieces.append((False, data))
        pieces.append((True, name))
        position = match.end()
    rest = text[position:]
    if "{{" in rest:
        return None
    if rest:
        pieces.append((False, rest))
    return tuple(pieces)


def _parsed_pieces(tree: nodes.Template) -> tuple[tuple[bool, str], ...] | None:
    """(is_column, text) pieces of a parsed template made only of text and ``{{ name }}``."""
    from jinja2 import nodes

    pieces: list[tuple[bool, str]] = []
    for statement in tree.body:
        if not isinstance(statement, nodes.Output):
            return None
        for node in statement.nodes:
            if isinstance(node, nodes.TemplateData):
                pieces.append((False, node.data))
            elif isinstance(node, nodes.Name) and node.ctx == "load":
                pieces.append((True, node.name))
            else:
                return None
    return tuple(pieces)


def _refuse_internals(tree: nodes.Template, where: str) -> None:
    """Refuse attribute or item access to underscore names before anything renders."""
    from jinja2 import nodes

    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name: object = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            name = arg.value if isinstance(arg, nodes.Const) else None
        if isinstance(name, str) and name.startswith("_"):
            raise JobError(
                f"{where}: the template reaches for {name!r}, a Python internal; "
                "templates may only read the row's columns"
            )
