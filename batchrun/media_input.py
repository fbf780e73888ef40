"""Audio files and document lists from the input, put into a row's messages.

``MediaColumns.of`` checks a job's ``prompt.audio_column`` and
``prompt.documents_column`` against the input and the job's APIs (one
clear ``JobError`` naming the field); ``attach`` puts a row's audio (read
from its file, checked by its magic number, as an ``input_audio`` part) and
its documents (a ``documents`` part) into the last user turn, so the
messages, and with them the request key, hold everything sent.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from batchrun.errors import JobError
from batchrun.magic import sniff
from batchrun.wire import JsonObject

if TYPE_CHECKING:
    from batchrun.config import Job

AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".webm": "video/webm",
}
_AUDIO_APIS = {"transcription", "translation"}


@dataclass(frozen=True)
class MediaColumns:
    """The input columns a job reads audio and documents from (None: not used)."""

    audio: str | None = None
    documents: str | None = None

    @property
    def columns(self) -> list[str]:
        """The input columns to read for each row."""
        return [c for c in (self.audio, self.documents) if c is not None]

    def __bool__(self) -> bool:
        return bool(self.columns)

    @classmethod
    def of(cls, job: Job, frame: pl.DataFrame) -> MediaColumns:
        """The job's media columns, checked: present in the input and fit for its APIs."""
        apis = {model.api or job.api for model in job.models}
        audio, documents = job.prompt.audio_column, job.prompt.documents_column
        listed = ", ".join(c for c in frame.columns if not c.startswith("__"))
        for field, column in (("audio_column", audio), ("documents_column", documents)):
            if column is not None and column not in frame.columns:
                raise JobError(
                    f"column {column!r} is not in the input (columns: {listed})",
                    field=f"prompt.{field}",
                )
        if apis & _AUDIO_APIS and audio is None:
            raise JobError(
                "api: transcription and translation send an audio file; name the input "
                "column holding its path",
                field="prompt.audio_column",
            )
        if "rerank" in apis and documents is None:
            raise JobError(
                "api: rerank ranks documents; name the input column holding each row's list "
                "of documents",
                field="prompt.documents_column",
            )
        if documents is not None and apis != {"rerank"}:
            raise JobError(
                "documents are sent by api: rerank only; remove documents_column or set "
                "api: rerank for every model",
                field="prompt.documents_column",
            )
        return cls(audio, documents)

    def attach(
        self, messages: list[Any], row: dict[str, Any], prompt_id: str, base: Path = Path()
    ) -> None:
        """Add the row's audio (read from ``base`` if relative) and documents to its last turn."""
        parts: list[JsonObject] = []
        if self.audio is not None:
            parts.append(audio_part(row[self.audio], prompt_id, base))
        if self.documents is not None:
            parts.append(
                {"type": "documents", "documents": documents_of(row[self.documents], prompt_id)}
            )
        if not parts:
            return
        for message in reversed(messages):
            if message["role"] == "user":
                content = message["content"]
                if isinstance(content, str):
                    content = [{"type": "text", "text": content}]
                message["content"] = [*content, *parts]
                return


def cell_path(text: str, base: Path) -> Path:
    """The file a row's cell names: a relative path is read from ``base`` (the data's folder)."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def read_cell_file(path: Path, shown: str, prompt_id: str, field: str) -> bytes:
    """The bytes of a row's file; a ``JobError`` naming the row, the file as ``shown`` and
    ``field`` when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise JobError(
            f"row {prompt_id!r}: cannot read {shown} ({exc.strerror or exc})", field=field
        ) from None


def audio_part(source: Any, prompt_id: str, base: Path = Path()) -> JsonObject:
    """An ``input_audio`` part with the file's bytes; a ``JobError`` for a bad file.

    A relative path is read from ``base`` (the input data's folder).
    """
    field = "prompt.audio_column"
    if source is None or source == "":
        raise JobError(f"row {prompt_id!r}: the audio path is empty", field=field)
    path = cell_path(str(source), base)
    kind = AUDIO_TYPES.get(path.suffix.lower())
    if kind is None:
        raise JobError(
            f"row {prompt_id!r}: {source!r} is not a {'/'.join(AUDIO_TYPES)} file",
            field=field,
        )
    data = read_cell_file(path, str(source), prompt_id, field)
    found = sniff(data)
    if found is None or found.split("/")[1] != kind.split("/")[1]:
        raise JobError(
            f"row {prompt_id!r}: {source} is named {path.suffix} but its bytes are "
            f"{found or 'no audio format batchrun knows'}",
            field=field,
        )
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(data).decode(), "format": path.suffix[1:].lower()},
    }


def documents_of(value: Any, prompt_id: str) -> list[str]:
    """A row's documents: a list column, or a JSON array of strings in a text column."""
    field = "prompt.documents_column"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise JobError(
                f"row {prompt_id!r}: documents should be a list (or a JSON array of strings)",
                field=field,
            ) from None
    if not isinstance(value, list) or not value or not all(isinstance(d, str) for d in value):
        raise JobError(
            f"row {prompt_id!r}: documents should be a non-empty list of strings", field=field
        )
    return value
