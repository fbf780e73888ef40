"""What every command shares: batchrun's errors turned into one line and an exit code.

``guard`` runs a command's work and turns batchrun's own errors (and only
those) into ``Failure``, which Click prints as ``batchrun: error: ...``
with the error's exit code. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from batchrun.errors import BatchrunError, OutputError
from batchrun.redact import redact

T = TypeVar("T")


class Failure(click.ClickException):
    """A message for the user and the exit code that goes with it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        """The exit code Click uses for this failure."""
        return self.code

    def show(self, file: Any = None) -> None:
        """Print ``batchrun: error: <message>`` on stderr, secrets masked."""
        click.echo(f"batchrun: error: {redact(self.message)}", err=True)


def writing(path: Path | str, write: Callable[[], T]) -> T:
    """Call ``write``; a failure to write ``path`` becomes one clear ``OutputError``."""
    import polars as pl

    try:
        return write()
    except (OSError, pl.exceptions.PolarsError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputError(
            f"cannot write {path}: {reason}; check that its folder exists, is writable and has room"
        ) from None


def guard(debug: bool, action: Callable[[], T]) -> T:
    """Run ``action``; turn batchrun's own errors into ``Failure``."""
    try:
        return action()
    except BatchrunError as exc:
        if debug:
            traceback.print_exc()
        raise Failure(redact(str(exc)), exc.exit_code) from None
