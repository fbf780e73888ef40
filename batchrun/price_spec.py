"""What a model costs, as a job (or a prices file) writes it: the ``Price`` entry.

Tokens are priced per million (``input``, ``output``, ``cached_input``);
images, audio and video may be priced by the piece instead or as well
(``per_image``, ``per_second``, ``per_1k_chars``). ``pricing.py`` turns an
entry and a results row into dollars.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from batchrun.providers import _Strict


class Price(_Strict):
    """What a model costs, in US dollars: per million tokens, and per image, second or 1k chars.

    ``input`` and ``output`` are required unless a ``per_*`` price is given
    (images, audio and video are often priced by the piece).
    """

    input: Annotated[float, Field(ge=0)] = 0.0
    output: Annotated[float, Field(ge=0)] = 0.0
    cached_input: Annotated[float, Field(ge=0)] | None = None
    per_image: Annotated[float, Field(ge=0)] | None = None
    per_second: Annotated[float, Field(ge=0)] | None = None
    per_1k_chars: Annotated[float, Field(ge=0)] | None = None

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
