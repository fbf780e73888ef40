"""The Jinja sandbox templates render in, with their work bounded.

``bounded_environment`` promises a sandboxed environment in which no single
operation can build a huge value or loop for long: ``*`` that repeats a
string or list beyond ``MAX_BUILT_CHARS``, ``**`` with a huge exponent,
``%``/``format`` with a huge width, ``center``/``indent`` to a huge width,
and ``range`` beyond ``MAX_RANGE_ITEMS`` items in one render (nested loops
add up) all raise ``TemplateTooCostly`` at once instead of eating memory or
time. An empty cell (``None``) renders as empty text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

MAX_BUILT_CHARS = 10_000_000
MAX_EXPONENT = 10_000
MAX_RANGE_ITEMS = 1_000_000
_HUGE_NUMBER = re.compile(r"\d{8,}")


class TemplateTooCostly(Exception):
    """A template asked for more work or memory than a prompt can need."""


class _BoundedSandbox(SandboxedEnvironment):
    """A sandbox whose ``*``, ``**``, ``%`` and ``range`` are bounded."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            finalize=_empty_for_none,
        )
        self.range_items = 0
        self.globals["range"] = self._range
        for name in ("center", "indent", "format"):
            self.filters[name] = _bounded_filter(name, self.filters[name])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """``left operator right``, refused if its result would be huge."""
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise TemplateTooCostly(f"an exponent of {right:,} is too large")
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return super().call_binop(context, operator, left, right)

    def _range(self, *args: int) -> range:
        items = range(*args)
        self.range_items += len(items)
        if self.range_items > MAX_RANGE_ITEMS:
            raise TemplateTooCostly(
                f"the template loops over more than {MAX_RANGE_ITEMS:,} range items in one row"
            )
        return items

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` of the sandbox, refusing huge widths."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            owner = getattr(value, "__self__", "")
            if isinstance(owner, str):
                _check_format(owner)
        return wrapped


class _BoundedTemplate(jinja2.Template):
    """A template that starts each render with a fresh range budget."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        environment = self.environment
        if isinstance(environment, _BoundedSandbox):
            environment.range_items = 0
        return super().render(*args, **kwargs)


_BoundedSandbox.template_class = _BoundedTemplate


def bounded_environment() -> SandboxedEnvironment:
    """A new sandboxed environment with bounded template work."""
    return _BoundedSandbox()


def _empty_for_none(value: Any) -> Any:
    return "" if value is None else value


def _check_repeat(sequence: Any, times: Any) -> None:
    if isinstance(sequence, str | list | tuple) and isinstance(times, int):
        size = len(sequence) * times
        if size > MAX_BUILT_CHARS:
            raise TemplateTooCostly(
                f"repeating a value {times:,} times would build {size:,} items "
                f"(at most {MAX_BUILT_CHARS:,})"
            )


def _check_format(text: str) -> None:
    if _HUGE_NUMBER.search(text):
        raise TemplateTooCostly("a format with a width or precision of 8 digits or more")


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` refusing a width over ``MAX_BUILT_CHARS`` or a huge format string."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_BUILT_CHARS:
                raise TemplateTooCostly(f"the {name} filter was given a width of {value:,}")
        if name == "format" and args and isinstance(args[0], str):
            _check_format(args[0])
        return function(*args, **kwargs)

    bounded.__name__ = function.__name__
    for attribute in ("jinja_pass_arg",):
        if hasattr(function, attribute):
            setattr(bounded, attribute, getattr(function, attribute))
    return bounded
