"""Input rows rendered into messages: as sent (the wire) and as stored.

``Renderer.of`` checks the job's templates, image and media columns
against the input once; ``Renderer.render`` then renders any rows of it,
a slice at a time, so no part of batchrun need hold a whole job's rendered
prompts. A rendering gives the messages as stored (a local image named by
its path), the messages as sent where they differ (the image inlined,
audio and documents attached) and the user prompt. Stored messages alone
(``wire=False``) read no file.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from batchrun.config import Job
from batchrun.dataset import PROMPT_ID
from batchrun.errors import JobError
from batchrun.formats.base import last_user_content
from batchrun.magic import sniff
from batchrun.media_input import MediaColumns, cell_path, read_cell_file
from batchrun.templates import PromptTemplate
from batchrun.wire import JsonObject

PROMPT_COLUMN = "prompt"
MESSAGES_COLUMN = "messages"


@dataclass(frozen=True)
class Rendering:
    """Rendered rows: stored messages, user prompts, and the sent messages where they differ."""

    messages: pl.Series
    prompt: pl.Series
    wire: pl.Series | None = None

    @property
    def sent(self) -> pl.Series:
        """The messages as sent (and hashed into request keys)."""
        return self.messages if self.wire is None else self.wire


@dataclass(frozen=True)
class Renderer:
    """How a job's rows become messages, checked against its input."""

    job: Job
    template: PromptTemplate
    used: list[str]
    media: MediaColumns

    @classmethod
    def of(cls, job: Job, frame: pl.DataFrame, template: PromptTemplate) -> Renderer:
        """The job's renderer; ``JobError`` if the templates or columns do not fit ``frame``."""
        template.check_columns((c for c in frame.columns if c != PROMPT_ID), "the input")
        used = sorted(template.variables)
        for column in used:
            if frame.get_column(column).null_count() == frame.height:
                raise JobError(
                    f"prompt: the template uses {{{{ {column} }}}} but column {column!r} is "
                    "empty in every row; fill it or change the template"
                )
        image_column = job.prompt.image_column
        if image_column is not None and image_column not in frame.columns:
            raise JobError(
                f"prompt.image_column: column {image_column!r} is not in the input "
                f"(columns: {', '.join(c for c in frame.columns if c != PROMPT_ID)})"
            )
        return cls(job, template, used, MediaColumns.of(job, frame))

    @property
    def with_images(self) -> bool:
        """Whether each row may send an image."""
        return self.job.prompt.image_column is not None

    def render(self, rows: pl.DataFrame, *, wire: bool = True) -> Rendering:
        """Render ``rows``; ``JobError`` naming the first row that cannot be rendered.

        With ``wire=False`` only the stored messages and prompts are made, and
        no image, audio or document file is read.
        """
        if rows.height == 0:
            empty = pl.Series([], dtype=pl.String)
            return Rendering(empty.alias(MESSAGES_COLUMN), empty.alias(PROMPT_COLUMN))
        # Speed trick, kept because it pays (issue 12): plain ``{{ column }}`` templates render
        # column-wise without Jinja. `batchrun validate` on 100,000 rows takes 0.75 s of CPU
        # this way and 6.5 s row by row; on the overhead benchmark's 10,000 prompts it saves
        # 0.58 s, about 6% of batchrun's CPU for the run (benchmarks/plan.py, benchmarks/run.py).
        if not self.with_images and not self.media:
            fast = self.template.render_columns(rows)
            if fast is not None:
                return Rendering(fast[0], fast[1])
        return self._render_rows(rows, wire)

    def _render_rows(self, frame: pl.DataFrame, wire: bool) -> Rendering:
        """Render row by row: the stored messages, the sent ones (if they differ), the prompts.

        Images, audio and documents go on the wire; the stored messages name a
        local image by its path and leave audio and documents to their input
        columns, which the results carry anyway.
        """
        stored: list[str] = []
        sent_rows: list[str] = []
        prompts: list[str] = []
        job = self.job
        image_column = job.prompt.image_column
        base = data_folder(job.input.path)
        ids = frame.get_column(PROMPT_ID).to_list()
        files = [image_column] if image_column else []
        columns = sorted({*self.used, *files, *self.media.columns})
        for prompt_id, row in zip(ids, frame.select(columns).iter_rows(named=True), strict=True):
            messages: list[Any] = self.template.render(row, prompt_id)
            sent = messages
            if image_column is not None:
                urls = _image(row[image_column], prompt_id, base, wire)
                if urls is not None:
                    sent = with_image(messages, urls[0], job.prompt.image_detail)
                    messages = with_image(messages, urls[1], job.prompt.image_detail)
            if self.media and wire:
                sent = [dict(message) for message in sent]
                self.media.attach(sent, row, prompt_id, base)
            stored.append(_json(messages))
            prompts.append(_user_text(messages))
            if wire:
                sent_rows.append(_json(sent))
        differs = wire and stored != sent_rows
        return Rendering(
            pl.Series(MESSAGES_COLUMN, stored, dtype=pl.String),
            pl.Series(PROMPT_COLUMN, prompts, dtype=pl.String),
            pl.Series("sent", sent_rows, dtype=pl.String) if differs else None,
        )


def _image(source: Any, prompt_id: str, base: Path, wire: bool) -> tuple[str, str] | None:
    """The image as sent and as stored; without ``wire`` the file is not read."""
    if wire:
        return image_urls(source, prompt_id, base)
    if source is None or source == "":
        return None
    return str(source), str(source)


def _user_text(messages: list[Any]) -> str:
    """The last user turn as the ``prompt`` column shows it (text parts only)."""
    content = last_user_content(messages)
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return str(content)


IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def image_urls(source: Any, prompt_id: str, base: Path) -> tuple[str, str] | None:
    """The image of a row as sent and as stored: a URL as is; a local file inlined, kept by path.

    A relative file path is read from ``base`` (the input data's folder).
    None when the cell is empty.
    """
    if source is None or source == "":
        return None
    text = str(source)
    if text.startswith(("http://", "https://", "data:")):
        return text, text
    path = cell_path(text, base)
    kind = IMAGE_TYPES.get(path.suffix.lower())
    if kind is None:
        raise JobError(
            f"row {prompt_id!r}: {text!r} is neither a URL nor a .png/.jpg/.gif/.webp file",
            field="prompt.image_column",
        )
    data = read_cell_file(path, str(path), prompt_id, "prompt.image_column")
    if sniff(data) != kind:
        raise JobError(
            f"row {prompt_id!r}: {text} is named {path.suffix} but its bytes are "
            f"{sniff(data) or 'no image format batchrun knows'}",
            field="prompt.image_column",
        )
    return f"data:{kind};base64," + base64.b64encode(data).decode(), text


def with_image(messages: list[Any], url: str, detail: str | None) -> list[Any]:
    """``messages`` with the last user turn as text plus the image at ``url`` (a copy)."""
    image: JsonObject = {"url": url}
    if detail:
        image["detail"] = detail
    changed = [dict(message) for message in messages]
    for message in reversed(changed):
        if message["role"] == "user":
            message["content"] = [
                {"type": "text", "text": message["content"]},
                {"type": "image_url", "image_url": image},
            ]
            break
    return changed


def data_folder(input_path: str) -> Path:
    """The folder relative file paths in the input's cells are read from."""
    path = Path(input_path)
    return path if path.is_dir() else path.parent


def _json(messages: list[Any]) -> str:
    return json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
