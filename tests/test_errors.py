"""The error tree drawn in ``batchrun.errors`` is the tree of its classes."""

from __future__ import annotations

import re

import batchrun.errors as errors
from batchrun.errors import BatchrunError


def drawn_tree() -> dict[str, str | None]:
    """Each class named in the module docstring's drawing, with its drawn parent."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^([\s│]*)(?:[├└]── )?([A-Z][A-Za-z]+)\s", line)
        if not match or not re.search(r"[├└]── |^    BatchrunError", line):
            continue
        depth = len(match.group(1)) + (4 if "──" in line else 0)
        name = match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def real_tree() -> dict[str, str | None]:
    """Each subclass of ``BatchrunError`` with its direct parent."""
    found: dict[str, str | None] = {"BatchrunError": None}
    pending = [BatchrunError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            found[sub.__name__] = cls.__name__
            pending.append(sub)
    return found


def test_drawing_matches_the_classes() -> None:
    """Every class is drawn under its real parent, and nothing else is drawn."""
    assert drawn_tree() == real_tree()


def test_every_error_of_the_package_is_in_the_tree() -> None:
    """No exception class of batchrun sits outside ``BatchrunError``."""
    import batchrun.catalog
    import batchrun.errors

    for module in (batchrun.errors, batchrun.catalog):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Exception):
                assert issubclass(value, BatchrunError), value


def test_exit_codes_follow_the_tree() -> None:
    """A refused key exits 3; bad input 2."""
    assert errors.FatalRequestError("x").exit_code == errors.EXIT_REFUSED
    assert errors.JobError("x").exit_code == errors.EXIT_USAGE
    assert errors.JobError("bad", field="limits.rpm").field == "limits.rpm"
    assert str(errors.JobError("bad", field="limits.rpm")) == "limits.rpm: bad"
