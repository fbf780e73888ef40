"""Rendering rows into chat messages with sandboxed Jinja2.

``compile_prompt`` promises templates that parse, reach for no Python
internals and use only the dataset's columns; ``PromptTemplate.render``
then turns one row into the messages that are sent, failing loudly
(``JobError``) rather than sending a half-rendered prompt, an empty user
message or a prompt over ``max_chars``. An empty cell renders as empty
text, never as ``None``; ``screen_rows`` applies the job's ``input.nulls``
before anything renders. Template work is bounded (``sandbox.py``).

Most prompts are text with ``{{ column }}`` in it. Those are recognised
without Jinja (``plain_pieces``, which gives exactly the pieces Jinja's
parser would) and rendered for all rows at once with Polars; Jinja is
imported only for templates that need it. This is a speed trick that earns
its keep: plan building on 100,000 rows takes a ninth of the CPU it takes
row by row through Jinja, and about 6% of the overhead benchmark's run
(``benchmarks/plan.py``; figures in ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from batchrun.config import Job, PromptSpec
from batchrun.dataset import PROMPT_ID
from batchrun.errors import JobError
from batchrun.params import DEFAULT_MAX_PROMPT_CHARS

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
    """The text of one turn; a null value renders as empty text, as in Jinja here."""
    parts = [
        pl.col(text).cast(pl.String).fill_null("") if is_column else pl.lit(text)
        for is_column, text in pieces
    ]
    return pl.concat_str(parts) if parts else pl.lit("")


def _environment() -> SandboxedEnvironment:
    from batchrun.sandbox import bounded_environment

    return bounded_environment()


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

    def __init__(self, turns: list[_Turn], max_chars: int = DEFAULT_MAX_PROMPT_CHARS) -> None:
        self._turns = turns
        self.max_chars = max_chars

    def limited(self, max_chars: int) -> PromptTemplate:
        """The same templates, refusing rendered prompts over ``max_chars`` characters."""
        return PromptTemplate(self._turns, max_chars)

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
        if not self.variables:
            return self._constant(frame)
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
        size = pl.sum_horizontal([c.str.len_chars() for c in contents]).alias("size")
        out = frame.select(messages, prompt, size)
        ids = frame.get_column(PROMPT_ID) if PROMPT_ID in frame.columns else None
        self._check_sizes(out.get_column("prompt"), out.get_column("size"), ids)
        return out.get_column("messages"), out.get_column("prompt")

    def _constant(self, frame: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
        """Messages and prompt of templates that read no column: one render, every row."""
        first = str(frame.get_column(PROMPT_ID)[0]) if PROMPT_ID in frame.columns else ""
        messages = self.render({}, first)
        encoded = json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
        users = [m["content"] for m in messages if m["role"] == "user"]
        return (
            pl.Series("messages", [encoded], dtype=pl.String).extend_constant(
                encoded, frame.height - 1
            ),
            pl.Series("prompt", [users[-1] if users else ""], dtype=pl.String).extend_constant(
                users[-1] if users else "", frame.height - 1
            ),
        )

    def _check_sizes(self, prompts: pl.Series, sizes: pl.Series, ids: pl.Series | None) -> None:
        """``JobError`` naming the first row whose user message is empty or prompt too long."""
        empty = prompts.str.strip_chars().str.len_chars() == 0
        if self._has_user and empty.any():
            row = int(empty.arg_true()[0])
            raise self._empty_error(str(ids[row]) if ids is not None else str(row))
        over = sizes > self.max_chars
        if over.any():
            row = int(over.arg_true()[0])
            raise self._size_error(str(ids[row]) if ids is not None else str(row), int(sizes[row]))

    @property
    def _has_user(self) -> bool:
        return any(turn.role == "user" for turn in self._turns)

    def _empty_error(self, prompt_id: str) -> JobError:
        where = next(t.where for t in reversed(self._turns) if t.role == "user")
        return JobError(
            f"row {prompt_id!r}: the user message renders empty; fill the row's cells "
            "or change the template",
            field=where,
        )

    def _size_error(self, prompt_id: str, size: int) -> JobError:
        return JobError(
            f"row {prompt_id!r}: the rendered prompt is {size:,} characters, over "
            f"limits.max_prompt_chars ({self.max_chars:,}); shorten the row or raise the limit",
            field="prompt",
        )

    def render(self, row: Mapping[str, Any], prompt_id: str = "") -> list[Message]:
        """The messages for one row; ``JobError`` when a template cannot render it."""
        import jinja2

        from batchrun.sandbox import TemplateTooCostly

        messages: list[Message] = []
        size = 0
        if None in row.values():  # an empty cell is empty text, in filters and tests too
            row = {name: "" if value is None else value for name, value in row.items()}
        for turn in self._turns:
            try:
                content = turn.compiled().render(row)
            except (jinja2.exceptions.SecurityError, TemplateTooCostly) as exc:
                raise JobError(
                    f"{turn.where}: row {prompt_id!r} cannot be rendered: "
                    f"refused by the sandbox: {exc}"
                ) from None
            except jinja2.exceptions.UndefinedError as exc:
                raise JobError(
                    f"{turn.where}: row {prompt_id!r}: {exc.message}; "
                    "check the template against the input columns"
                ) from None
            except Exception as exc:
                raise JobError(
                    f"{turn.where}: row {prompt_id!r} cannot be rendered: {exc}"
                ) from None
            if turn.role == "user" and turn is self._last_user and not content.strip():
                raise self._empty_error(prompt_id)
            size += len(content)
            if size > self.max_chars:
                raise self._size_error(prompt_id, size)
            messages.append({"role": turn.role, "content": content})
        return messages

    @property
    def _last_user(self) -> _Turn | None:
        return next((t for t in reversed(self._turns) if t.role == "user"), None)


def screen_rows(
    job: Job, frame: pl.DataFrame, template: PromptTemplate
) -> tuple[pl.DataFrame, PromptTemplate]:
    """The rows to render under the job's ``input.nulls``, and the template with its limits.

    An empty cell in a column the templates read is an error naming the row
    and the column (``nulls: error``, the default), drops its row
    (``skip``) or renders as empty text (``empty``). A column empty in
    every row is left for the plan to refuse as a whole.
    """
    used = [
        c
        for c in sorted(template.variables)
        if c in frame.columns and 0 < frame.get_column(c).null_count() < frame.height
    ]
    policy = job.input.nulls
    if used and policy == "error":
        for column in used:
            row = int(frame.get_column(column).is_null().arg_true()[0])
            prompt_id = frame.get_column(PROMPT_ID)[row] if PROMPT_ID in frame.columns else row
            raise JobError(
                f"row {prompt_id!r}: column {column!r} is empty; fill it, or set input.nulls: "
                "skip (leave such rows out) or empty (render the cell as empty text)",
                field="input",
            )
    if used and policy == "skip":
        frame = frame.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in used))
        if frame.height == 0:
            raise JobError(
                "input.nulls is skip and every row has an empty cell in the columns the "
                f"templates read ({', '.join(used)}); nothing is left to send",
                field="input",
            )
    elif used and policy == "empty":
        frame = frame.with_columns(pl.col(c).cast(pl.String).fill_null("") for c in used)
    return frame, template.limited(job.limits.max_prompt_chars)


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
