"""The job's prompts: its input rows, rendered a slice at a time, never all at once.

``PromptTable`` holds the input rows as read, not their renderings.
Building it renders every row once, a slice at a time, so a row that
cannot be rendered is a ``JobError`` before anything is sent, and keeps
what the plan needs of the whole: the estimated prompt tokens and a digest
of what is sent. After that each reader renders only the rows it needs:
the send loop a slice at a time (the last few slices kept, so the models'
workers, which move through the rows side by side, render each slice
once), ``supersede`` the sent messages and compaction the carried columns
of the prompts in the batch of results at hand. A run of a million
requests holds its input and a few slices, not a million rendered prompts.
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from batchrun.dataset import PROMPT_ID, find_rows
from batchrun.render import MESSAGES_COLUMN, PROMPT_COLUMN, Renderer, Rendering

# Rows rendered at a time. A job of at most this many rows is rendered once in all.
SLICE_ROWS = 10_000
# Jobs that inline files (images, audio) render fewer rows at a time: each row may be large.
FILE_SLICE_ROWS = 100
# Rendered slices kept for the send loop.
_KEPT = 2
_CHARS_PER_TOKEN = 4
_DIGEST_MOD = 2**64


class Slice(NamedTuple):
    """One slice of rows as the send loop reads them: ids, messages as sent, prompt tokens."""

    ids: list[str]
    sent: list[str]
    tokens: list[int]


class PromptTable:
    """The input rows of a job and how they render; every row checked on construction."""

    def __init__(self, frame: pl.DataFrame, renderer: Renderer, slice_rows: int | None = None):
        self.frame = frame
        self.renderer = renderer
        files = renderer.with_images or bool(renderer.media)
        self.slice_rows = slice_rows or (FILE_SLICE_ROWS if files else SLICE_ROWS)
        self._kept: dict[int, Slice] = {}
        self.tokens = 0  # the estimated prompt tokens of every row together
        self.digest = 0  # the sum of the rows' hashes of prompt id and messages as sent
        self._check()

    @property
    def height(self) -> int:
        """How many prompts the job has."""
        return self.frame.height

    def starts(self) -> range:
        """The first row of each slice."""
        return range(0, self.height, self.slice_rows)

    def slice(self, start: int) -> Slice:
        """The slice of rows from ``start``, rendered (or kept from an earlier call)."""
        kept = self._kept.pop(start, None)
        if kept is None:
            rows = self.frame.slice(start, self.slice_rows)
            kept = _as_slice(rows.get_column(PROMPT_ID), self.renderer.render(rows))
        self._keep(start, kept)
        return kept

    def _keep(self, start: int, rendered: Slice) -> None:
        self._kept[start] = rendered
        while len(self._kept) > _KEPT:
            del self._kept[next(iter(self._kept))]

    def _check(self) -> None:
        """Render every row once: the first that cannot render is a ``JobError``.

        Sums the prompt tokens and the digest on the way, and keeps the last
        slices (for a job of one slice, all of it: rendered once in all).
        """
        last = self.starts()[-_KEPT:]
        for start in self.starts():
            rows = self.frame.slice(start, self.slice_rows)
            ids = rows.get_column(PROMPT_ID)
            rendering = self.renderer.render(rows)
            self.tokens += int(_tokens(rendering.messages).sum())
            hashes = pl.DataFrame([ids, rendering.sent]).hash_rows(seed=0)
            self.digest = (self.digest + int(hashes.sum())) % _DIGEST_MOD
            if start in last:
                self._keep(start, _as_slice(ids, rendering))

    def find(self, ids: pl.Series) -> pl.Series:
        """The row of each prompt id, in order; null where the job has no such prompt."""
        return find_rows(self.frame.get_column(PROMPT_ID), ids)

    @property
    def schema(self) -> dict[str, pl.DataType]:
        """The columns results carry: the input's, then ``prompt`` and ``messages``."""
        empty = pl.Series([], dtype=pl.String)
        return dict(_carried(self.frame.head(0), Rendering(empty, empty)).schema)

    def rows(self, ids: pl.Series) -> pl.DataFrame:
        """The carried columns of each prompt id, in order; nulls for an id the job lacks.

        Only these rows are rendered (each prompt once), and no file is read.
        """
        rows, rendering, which = self._render(ids, wire=False)
        return _carried(rows, rendering).select(pl.all().gather(which))

    def sent(self, ids: pl.Series) -> pl.Series:
        """The messages as sent for each prompt id, in order; null for an id the job lacks."""
        _, rendering, which = self._render(ids, wire=True)
        return rendering.sent.gather(which)

    def _render(self, ids: pl.Series, *, wire: bool) -> tuple[pl.DataFrame, Rendering, pl.Series]:
        """The rows of ``ids`` (each once) rendered, and which of them each id is (or null)."""
        found = self.find(ids)
        unique = found.drop_nulls().unique(maintain_order=True)
        which = (
            pl.DataFrame({"row": found})
            .join(
                pl.DataFrame({"row": unique}).with_row_index("which"),
                on="row",
                how="left",
                maintain_order="left",
            )
            .get_column("which")
        )
        rows = self.frame[unique]
        return rows, self.renderer.render(rows, wire=wire), which


def _carried(rows: pl.DataFrame, rendering: Rendering) -> pl.DataFrame:
    """Input rows with their ``prompt`` and ``messages`` (in place of input columns so named)."""
    return rows.with_columns(
        rendering.prompt.alias(PROMPT_COLUMN), rendering.messages.alias(MESSAGES_COLUMN)
    )


def _tokens(messages: pl.Series) -> pl.Series:
    """The estimated prompt tokens of each row: a token per four characters of its messages."""
    return messages.str.len_chars() // _CHARS_PER_TOKEN + 1


def _as_slice(ids: pl.Series, rendering: Rendering) -> Slice:
    return Slice(ids.to_list(), rendering.sent.to_list(), _tokens(rendering.messages).to_list())
