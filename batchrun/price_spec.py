"""What a model costs, as a job (or a prices file) writes it: the ``Price`` entry.

Tokens are priced per million (``input``, ``output``, ``cached_input``);
images, audio and video may be priced by the piece instead or as well
(``per_image``, ``per_second``, ``per_1k_chars``). ``pricing.py`` turns an
entry and a results row into dollars.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from batchrun.section import JobSection


class Price(JobSection):
    """What a model costs, in US dollars: per million tokens, and per image, second or 1k chars.

    ``input`` and ``output`` are required unless a ``per_*`` price is given
    (images, audio and video are often priced by the piece).
    """

    input: Annotated[float, Field(ge=0)] = 0.0
    """US dollars per million prompt tokens."""
    output: Annotated[float, Field(ge=0)] = 0.0
    """US dollars per million completion tokens."""
    cached_input: Annotated[float, Field(ge=0)] | None = None
    """US dollars per million cached prompt tokens."""
    batch_input: Annotated[float, Field(ge=0)] | None = None
    """US dollars per million prompt tokens in batch mode (half of input when unset)."""
    batch_output: Annotated[float, Field(ge=0)] | None = None
    """US dollars per million completion tokens in batch mode (half of output when unset)."""
    per_image: Annotated[float, Field(ge=0)] | None = None
    """US dollars per image generated."""
    per_second: Annotated[float, Field(ge=0)] | None = None
    """US dollars per second of audio or video."""
    per_1k_chars: Annotated[float, Field(ge=0)] | None = None
    """US dollars per 1,000 characters of input (speech)."""

    @model_validator(mode="after")
    def _priced(self) -> Price:
        given = self.model_fields_set
        if not self.per_unit and not {"input", "output"} <= given:
            missing = sorted({"input", "output"} - given)
            raise ValueError(
                f"give {' and '.join(missing)} (dollars per million tokens), or a per_image, "
                "per_second or per_1k_chars price"
            )
        return self

    @property
    def per_unit(self) -> bool:
        """Whether the model is priced by the image, second or 1,000 characters."""
        return any(p is not None for p in (self.per_image, self.per_second, self.per_1k_chars))
