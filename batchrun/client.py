"""One gateway's client: a format builds each request, a transport sends it, the format reads it.

``GatewayClient.complete`` returns an ``Answer`` or raises a
``RequestError`` subclass: the transport raises those for the network
(``transport.py``), ``classify.py`` for a failed answer, the format for an
answer it cannot read. Parsing is defensive: an HTTP 200 with a non-null
``error`` is an error, an HTML page from a proxy is a server error, and
usage fields may be missing, zero or extra.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

import yarl

from batchrun import __version__
from batchrun.classify import answer_payload, classify_error, decode
from batchrun.errors import ArtifactError, ConnectionFailure, TimeoutFailure
from batchrun.formats import FORMATS, Api, Format
from batchrun.formats.base import reply_of
from batchrun.record import Answer, Request
from batchrun.sse import split_lines
from batchrun.transport import AiohttpTransport, HttpRequest, HttpResponse, Transport

# Sent with every request; the key and the provider's headers are sent per request instead,
# so that a redirect to another origin can leave them behind.
_SESSION_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json",
    "Accept-Language": "en",
    "User-Agent": f"batchrun/{__version__}",
}


class Sender(Protocol):
    """What the runner needs from a client: send one request, get its answer."""

    async def complete(self, request: Request) -> Answer: ...


class GatewayClient:
    """Sends requests in any format to one OpenAI-compatible base URL.

    Without a ``transport`` it opens an ``AiohttpTransport`` of its own for
    the time it is entered (``async with``).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 120.0,
        idle_timeout_s: float = 60.0,
        extra_headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
        transport: Transport | None = None,
    ) -> None:
        self._base = yarl.URL(base_url.rstrip("/") + "/")
        self._secrets = [api_key] if api_key else []
        own = dict(extra_headers or {})
        if api_key:
            own["Authorization"] = f"Bearer {api_key}"
        self._own_headers = own
        self._headers: dict[Api, dict[str, str]] = {
            api: {**own, **format.headers(api_key)} for api, format in FORMATS.items()
        }
        self._urls: dict[str, yarl.URL] = {}
        self._owned: AiohttpTransport | None = None
        if transport is None:
            self._owned = AiohttpTransport(
                timeout_s=timeout_s,
                idle_timeout_s=idle_timeout_s,
                headers=_SESSION_HEADERS,
                max_connections=max_connections,
                secrets=self._secrets,
            )
            transport = self._owned
        self._transport: Transport = transport

    async def __aenter__(self) -> GatewayClient:
        if self._owned is not None:
            await self._owned.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._owned is not None:
            await self._owned.__aexit__(*exc_info)

    async def complete(self, request: Request) -> Answer:
        """Send one request; return its answer or raise a classified ``RequestError``."""
        model = request.model
        format = FORMATS[model.api]
        url = self._urls.get(model.path) or self._url(model.path)
        headers: Mapping[str, str] = self._headers[model.api]
        if model.content_type is not None:
            headers = {**headers, "Content-Type": model.content_type}
        http = HttpRequest("POST", url, headers, request.body, model.stream)
        started = time.perf_counter()
        response = await self._transport.send(http)
        if response.chunks is not None:
            return await self._read_stream(format, response, started)
        latency = time.perf_counter() - started
        status, headers, body = response.status, response.headers, response.body
        return format.read(status, headers, body, reply_of(status, headers, latency), self._secrets)

    async def _read_stream(self, format: Format, response: HttpResponse, started: float) -> Answer:
        """A streamed request's answer: events if the gateway streams, else its JSON body."""
        assert response.chunks is not None
        status, headers = response.status, response.headers
        try:
            if status != 200 or "text/event-stream" not in headers.get("Content-Type", ""):
                body = await response.read()
                latency = time.perf_counter() - started
                payload = answer_payload(status, headers, body, self._secrets)
                return format.answer(
                    payload, reply_of(status, headers, latency), body, self._secrets
                )
            reply = reply_of(status, headers, 0.0)
            lines = split_lines(response.chunks)
            return await format.read_stream(lines, reply, started, self._secrets)
        finally:
            await response.aclose()

    async def get_json(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """``GET`` a path relative to the base URL (``models``, ``../api/...``): status and JSON.

        Raises ``ConnectionFailure`` when the gateway cannot be reached.
        """
        url = self._base.join(yarl.URL(path.lstrip("/")))
        request = HttpRequest("GET", url, {**self._own_headers, **(headers or {})})
        try:
            response = await self._transport.send(request)
        except TimeoutFailure:
            raise ConnectionFailure(f"no answer from {url} in time") from None
        except ConnectionFailure as exc:
            raise ConnectionFailure(f"cannot reach {url}: {exc.message}") from None
        return response.status, decode(await response.read())

    async def exchange(
        self, api: Api, method: str, path: str, body: bytes | None = None
    ) -> HttpResponse:
        """One request of ``api`` to a path relative to the base URL, its answer read whole.

        For the requests of a task beyond its submission (a video's status);
        network failures raise as for ``complete``, the status is the caller's.
        """
        url = self._base.join(yarl.URL(path))
        return await self._transport.send(HttpRequest(method, url, self._headers[api], body))

    async def download(self, url: str, api: Api, limit: int) -> bytes:
        """The file at ``url`` (absolute, or relative to the base URL), at most ``limit`` bytes.

        The key goes only to the gateway's own origin. A refusal raises its
        classified error; a file over ``limit`` an ``ArtifactError``, unread beyond it.
        """
        target = self._base.join(yarl.URL(url))
        headers = self._headers[api] if target.origin() == self._base.origin() else {}
        response = await self._transport.send(HttpRequest("GET", target, headers, None, True))
        try:
            if response.status != 200:
                body = await response.read()
                raise classify_error(
                    response.status, response.headers, body, decode(body), self._secrets
                )
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(limit)
            chunks: list[bytes] = []
            size = 0
            assert response.chunks is not None
            async for chunk in response.chunks:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            await response.aclose()

    def _url(self, path: str) -> yarl.URL:
        url = self._urls[path] = self._base.join(yarl.URL(path))
        return url


def parse_answer(
    api: Api, status: int, headers: Mapping[str, str], body: bytes, secrets: list[str]
) -> Answer:
    """One answer body of ``api``'s format read as the client reads it, or its ``RequestError``.

    For answers that arrive other than over a request of their own (a batch's
    output file); the latency is not known, so it is 0.
    """
    payload = answer_payload(status, headers, body, secrets)
    return FORMATS[api].answer(payload, reply_of(status, headers, 0.0), body, secrets)


def _too_large(limit: int) -> ArtifactError:
    return ArtifactError(f"the answer's file is over the bound of {limit:,} bytes per artifact")
