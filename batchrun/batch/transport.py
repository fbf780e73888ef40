"""The HTTP side of the batch lifecycles, over the client's one transport.

``BatchHttp.call`` promises a ``Reply`` (status and body) for any answer,
and a ``ConnectionFailure`` (key redacted) when the provider cannot be
reached; the lifecycles decide what each status means. The network is
``batchrun.transport``'s, where aiohttp's errors become batchrun's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import yarl

from batchrun import __version__
from batchrun.errors import ConnectionFailure, TimeoutFailure
from batchrun.formats.media import MULTIPART_TYPE
from batchrun.formats.messages import ANTHROPIC_VERSION
from batchrun.redact import redact
from batchrun.transport import AiohttpTransport, HttpRequest


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
        headers = dict(extra_headers or {})
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
            headers["x-api-key"] = api_key
        headers["anthropic-version"] = ANTHROPIC_VERSION
        # The key goes with each request, never in the session: a redirect to another
        # origin leaves it behind (the transport's rule).
        self._headers = headers
        self._transport = AiohttpTransport(
            timeout_s=timeout_s,
            idle_timeout_s=timeout_s,
            headers={"User-Agent": f"batchrun/{__version__}"},
            max_connections=8,
            secrets=self.secrets,
        )

    async def __aenter__(self) -> BatchHttp:
        await self._transport.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._transport.__aexit__(*exc_info)

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
        form: bytes | None = None,
    ) -> Reply:
        """Send one request (a JSON ``body`` or a multipart ``form``); its status and body."""
        url = self.url(path)
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        elif form is not None:
            headers["Content-Type"] = MULTIPART_TYPE
        request = HttpRequest(method, url, headers, form if form is not None else body)
        try:
            response = await self._transport.send(request)
        except TimeoutFailure:
            raise ConnectionFailure(f"no answer from {method} {url} in time") from None
        except ConnectionFailure as exc:
            raise ConnectionFailure(f"cannot reach {method} {url}: {exc.message}") from None
        return Reply(response.status, response.body)
