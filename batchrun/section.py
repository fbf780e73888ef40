"""The base of every part of a job file: strict, frozen, described field by field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class JobSection(BaseModel):
    """A part of a job file: unknown keys refused, frozen once loaded.

    Each field's docstring is its description: the one source of the JSON
    Schema (``batchrun schema``) and of the field reference, read from the
    source by ``job_schema.field_docs`` when they are asked for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
