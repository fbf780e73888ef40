"""Keeping secrets out of everything batchrun writes or prints.

``redact`` promises that neither a known secret nor anything shaped like an
API key or an ``Authorization`` value survives in the text it returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_KEY_SHAPES = re.compile(
    r"(?i)(bearer\s+)[^\s\"',;]+"
    r"|\bsk-[A-Za-z0-9_*\-]{6,}"
    r"|(\"?(?:x-api-key|api[_-]?key|authorization|x-goog-api-key)\"?\s*[:=]\s*\"?)[^\s\"',;}]+"
)
MASK = "[redacted]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every given secret, and every key-shaped token, masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return _KEY_SHAPES.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    prefix = match.group(1) or match.group(2) or ""
    return prefix + MASK
