"""What a job sends from its data: where the prompt set is (``input``) and how a row
becomes messages (``prompt``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from batchrun.section import JobSection


class Turn(JobSection):
    """One templated chat message."""

    role: Literal["system", "user", "assistant", "developer"]
    """Who speaks: system, user, assistant or developer."""
    content: str
    """The turn's text, a Jinja2 template over the input's columns."""


class PromptSpec(JobSection):
    """How a row becomes chat messages: ``system`` + ``user``, or a ``messages`` list."""

    system: str | None = None
    """The system message, a Jinja2 template over the input's columns."""
    user: str | None = None
    """The user message, a Jinja2 template over the input's columns."""
    messages: list[Turn] | None = None
    """The whole conversation as templated turns, instead of system and user."""
    image_column: str | None = None
    """A column of image URLs or local image files, sent with the last user turn."""
    image_detail: Literal["auto", "low", "high"] | None = None
    """The detail asked for each image: auto, low or high."""
    audio_column: str | None = None
    """A column naming each row's audio file (api: transcription), read beside the data."""
    documents_column: str | None = None
    """A list column of each row's documents to rank (api: rerank)."""

    @model_validator(mode="after")
    def _one_form(self) -> PromptSpec:
        if self.messages is None and self.user is None:
            raise ValueError("give either 'user' (with an optional 'system') or 'messages'")
        if self.messages is not None and (self.user is not None or self.system is not None):
            raise ValueError("give either 'user'/'system' or 'messages', not both")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' is empty; give at least one turn")
        return self

    def turns(self) -> list[Turn]:
        """The templated turns in the order they are sent."""
        if self.messages is not None:
            return list(self.messages)
        turns = [Turn(role="system", content=self.system)] if self.system else []
        assert self.user is not None
        return [*turns, Turn(role="user", content=self.user)]


class InputSpec(JobSection):
    """Where the prompt set comes from, and what to do with empty cells and mixed files.

    ``nulls``: a cell the templates read that is empty is an error (the
    default), makes its row be skipped, or renders as empty text.
    ``union``: files of a folder or glob with differing columns are refused
    unless this is true.
    """

    path: Annotated[str, Field(min_length=1)]
    """The prompt set: a .parquet or .csv file, a glob or a folder."""
    id_column: str | None = None
    """The column that identifies a row; without it, a hash of the row."""
    limit: Annotated[int, Field(gt=0)] | None = None
    """Read only the first N rows."""
    format: Literal["parquet", "csv"] | None = None
    """parquet or csv, where the file name does not say."""
    nulls: Literal["skip", "empty", "error"] = "error"
    """An empty cell the templates read: an error, skip its row, or render it empty."""
    union: bool = False
    """Accept the files of a folder or glob whose columns differ."""
