"""Keeping secrets out of everything batchrun writes or prints.

One registry (``secrets``) holds every secret the process knows: the API
key, the balance access token, the values of ``provider.headers`` and
credentials written in URLs. They are registered where they enter (the job
is loaded, the key is resolved); ``redact`` then masks every registered
secret and everything shaped like a key (``Bearer <token>``, ``sk-...``,
``x-api-key: ...``, ``user:password@`` in a URL) wherever it appears.

``redact`` promises that no registered secret, and no key-shaped token,
survives in the text it returns. ``excerpt`` redacts *before* it cuts, so a
key can never be split at the cut and half of it kept.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

_KEY_SHAPES = re.compile(
    r"(?i)(bearer\s+)[^\s\"',;]+"
    r"|\bsk-[A-Za-z0-9_*\-]{6,}"
    r"|(\"?(?:x-api-key|api[_-]?key|authorization|x-goog-api-key|access[_-]?token)\"?\s*[:=]\s*\"?"
    r"(?:(?:bearer|basic|token)\s+)?)[^\s\"',;}]+"
    r"|(\b[a-z][a-z0-9+.\-]*://)[^\s/@:\"']+:[^\s/@\"']*@"
)
MASK = "[redacted]"
# Shorter values (a header such as ``X-Debug: on``) are not secrets worth
# masking, and masking them would garble ordinary text.
MIN_SECRET_CHARS = 8
# A text that ends in the first this-many characters of a secret was cut
# inside it by someone who truncated before redacting.
_MIN_CUT_PREFIX = 8


class SecretRegistry:
    """Every secret value this process holds; safe to use from any thread."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def register(self, value: str | None) -> None:
        """Remember ``value`` (ignored when empty or shorter than ``MIN_SECRET_CHARS``)."""
        if value is None:
            return
        value = value.strip()
        if len(value) >= MIN_SECRET_CHARS:
            with self._lock:
                self._values.add(value)

    def clear(self) -> None:
        """Forget every secret (tests use it between runs)."""
        with self._lock:
            self._values.clear()

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        return iter(values)

    def __contains__(self, value: object) -> bool:
        with self._lock:
            return value in self._values


secrets = SecretRegistry()


def register(value: str | None) -> None:
    """Register one secret with the process-wide registry."""
    secrets.register(value)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every registered secret, every ``extra`` one and every key shape masked."""
    known = [s for s in extra if s and len(s) >= 4]
    known.extend(secrets)
    for secret in sorted(set(known), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _mask_cut_tail(text, known)
    return _KEY_SHAPES.sub(_mask_match, text)


def excerpt(value: object, limit: int = 80) -> str:
    """A short, redacted, quoted excerpt of ``value`` for an error message.

    The text is redacted first and cut second; a cut value says how long it
    was, so a 10 MB value prints about ``limit`` characters.
    """
    text = redact(value if isinstance(value, str) else repr(value))
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    return f"{text[:limit]!r}… ({len(text):,} chars)"


def _mask_cut_tail(text: str, known: Iterable[str]) -> str:
    """Mask a tail of ``text`` that is the start of a secret cut off by truncation."""
    stripped = text.rstrip("…. ")
    for secret in known:
        for size in range(min(len(secret) - 1, len(stripped)), _MIN_CUT_PREFIX - 1, -1):
            if stripped.endswith(secret[:size]):
                return stripped[: len(stripped) - size] + MASK + text[len(stripped) :]
    return text


def _mask_match(match: re.Match[str]) -> str:
    if match.group(3):
        return match.group(3) + MASK + "@"
    prefix = match.group(1) or match.group(2) or ""
    return prefix + MASK


def describe_url(url: str) -> str:
    """``url`` for messages: scheme, host, port and path; no user, password or query."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
