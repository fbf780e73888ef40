"""The HTTP side of the batch lifecycles: one aiohttp session on the job's base URL.

``BatchHttp.call`` promises a ``Reply`` (status and body) for any answer,
and a ``ConnectionFailure`` (key redacted) when the provider cannot be
reached; the lifecycles decide what each status means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import aiohttp
import yarl

from batchrun import __version__
from batchrun.errors import ConnectionFailure
from batchrun.formats.messages import ANTHROPIC_VERSION
from batchrun.redact import redact


class Reply(NamedTuple):
    """A provider's answer: HTTP status and body."""

    status: int
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        import json

        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def snippet(self, secrets: list[str]) -> str:
        """The first few hundred characters of the body, one line, secrets redacted."""
        text = " ".join(self.body[:600].decode("utf-8", errors="replace").split())
        return redact(text, secrets) or "(empty body)"


class BatchHttp:
    """Requests to one base URL (``.../v1``) with the job's key and headers."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        extra_headers: Mapping[str, str] | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.base = yarl.URL(base_url.rstrip("/") + "/")
        self.secrets = [api_key] if api_key else []
        headers = {"User-Agent": f"batchrun/{__version__}", **(extra_headers or {})}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
            headers["x-api-key"] = api_key
        headers["anthropic-version"] = ANTHROPIC_VERSION
        self._headers = headers
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BatchHttp:
        self._session = aiohttp.ClientSession(
            headers=self._headers, timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar()
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str) -> yarl.URL:
        """``path`` relative to the base URL, or as is when absolute (a ``results_url``)."""
        if path.startswith(("http://", "https://")):
            return yarl.URL(path)
        return self.base.join(yarl.URL(path))

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        form: aiohttp.FormData | None = None,
    ) -> Reply:
        """Send one request; its status and body."""
        assert self._session is not None, "use BatchHttp as an async context manager"
        url = self.url(path)
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            async with self._session.request(
                method, url, data=form if form is not None else body, headers=headers
            ) as response:
                return Reply(response.status, await response.read())
        except TimeoutError:
            raise ConnectionFailure(f"no answer from {method} {url} in time") from None
        except aiohttp.ClientError as exc:
            raise ConnectionFailure(
                redact(f"cannot reach {method} {url}: {exc}", self.secrets)
            ) from None
