"""The one name for raw JSON: an object as it goes on or comes off the wire.

Gateways answer with JSON whose shape batchrun does not own; such a value
is a ``JsonObject`` until a format reads it into a typed record
(``record.Answer``). Internal data is never a ``JsonObject``.
"""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]
