"""The network under the client: one ``send``, and the one place aiohttp's errors are translated.

``Transport`` is the seam: ``GatewayClient`` builds an ``HttpRequest``,
hands it to ``send`` and parses the ``HttpResponse``. ``AiohttpTransport``
is the real one: one session, redirects followed by hand so that a
redirect to another origin carries none of the request's own headers (the
key in every header any format puts it in, and the provider's extra
headers), and every aiohttp exception turned into a ``RequestError``
subclass here and nowhere else. ``MockTransport`` answers from a function,
for tests that drive the client without a socket. A request's total time
is bounded by ``deadlines.Deadlines`` (one sweep, not a timer per request).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

import aiohttp
import yarl

from batchrun.deadlines import Deadlines
from batchrun.errors import ConnectionFailure, StreamCut, TimeoutFailure
from batchrun.redact import redact

MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class HttpRequest(NamedTuple):
    """One HTTP request. ``headers`` are the request's own: none follow it to another origin."""

    method: str
    url: yarl.URL
    headers: Mapping[str, str]
    body: bytes | None = None
    stream: bool = False


class HttpResponse:
    """Status, headers and body of an answer; a streamed one gives its body as ``chunks``."""

    __slots__ = ("_close", "body", "chunks", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes = b"",
        chunks: AsyncIterator[bytes] | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.chunks = chunks
        self._close = close

    async def read(self) -> bytes:
        """The whole body (what is left of a stream, read to its end)."""
        if self.chunks is None:
            return self.body
        return b"".join([chunk async for chunk in self.chunks])

    async def aclose(self) -> None:
        """Give the connection back (a streamed answer holds it until then)."""
        if self._close is not None:
            await self._close()


class Transport(Protocol):
    """Sends one request and returns its answer, or raises a ``RequestError`` subclass."""

    async def send(self, request: HttpRequest) -> HttpResponse: ...


class AiohttpTransport:
    """``Transport`` over one aiohttp session; use it as an async context manager.

    A request is bounded to ``timeout_s`` in all (by the sweep of
    ``Deadlines``), and a streamed one by aiohttp's timers: ``timeout_s`` in
    all and ``idle_timeout_s`` between reads.
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        idle_timeout_s: float,
        headers: Mapping[str, str],
        max_connections: int = 100,
        secrets: Sequence[str] = (),
    ) -> None:
        self._timeout_s = timeout_s
        self._idle_s = idle_timeout_s
        self._stream_timeout = aiohttp.ClientTimeout(total=timeout_s, sock_read=idle_timeout_s)
        self._headers = dict(headers)
        self._max_connections = max_connections
        self._secrets = list(secrets)
        self._session: aiohttp.ClientSession | None = None
        self._deadlines = Deadlines(timeout_s)

    async def __aenter__(self) -> AiohttpTransport:
        connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
        # No total on the session: the sweep of ``Deadlines`` bounds each request, more
        # cheaply than aiohttp's timer per request. No cookies: a key is all a gateway needs.
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._deadlines.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._deadlines.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: HttpRequest) -> HttpResponse:
        """The answer to ``request``, read whole unless it is streamed."""
        if request.stream:
            return await self._send_stream(request)
        deadlines = self._deadlines
        task = deadlines.arm()
        try:
            response = await self._open(request)
            async with response:
                return HttpResponse(response.status, response.headers, await response.read())
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise
            raise self._timed_out() from None
        except TimeoutError:
            raise self._timed_out() from None
        except aiohttp.ClientError as exc:
            raise self._connection_failure(exc) from None
        finally:
            deadlines.disarm(task)

    async def _send_stream(self, request: HttpRequest) -> HttpResponse:
        try:
            response = await self._open(request, self._stream_timeout)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._stream_error(exc, None) from None

        chunks = self._chunks(response)

        async def close() -> None:
            await chunks.aclose()
            response.release()

        return HttpResponse(response.status, response.headers, chunks=chunks, close=close)

    async def _chunks(self, response: aiohttp.ClientResponse) -> AsyncGenerator[bytes]:
        """The body as it arrives; a cut or a silence is a ``StreamCut``."""
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._stream_error(exc, response.status) from None

    def _stream_error(
        self, exc: TimeoutError | aiohttp.ClientError, status: int | None
    ) -> StreamCut | ConnectionFailure:
        """A streamed request's failure: silence and cuts are ``StreamCut``s."""
        if isinstance(exc, TimeoutError):
            return StreamCut(
                f"the stream went quiet for {self._idle_s:g} s (or passed "
                f"{self._timeout_s:g} s in all)",
                http_status=status,
            )
        if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
            return StreamCut(
                redact(f"the stream was cut ({exc})", self._secrets), http_status=status
            )
        return self._connection_failure(exc)

    async def _open(
        self, request: HttpRequest, limits: aiohttp.ClientTimeout | None = None
    ) -> aiohttp.ClientResponse:
        """The response to ``request``, redirects followed; its body not read yet.

        ``limits`` bound a streamed request; others have the session's (the
        connect time only: ``send`` bounds the rest).
        """
        assert self._session is not None, "use AiohttpTransport as an async context manager"
        limits = limits or self._session.timeout
        response = await self._session.request(
            request.method,
            request.url,
            data=request.body,
            headers=request.headers,
            allow_redirects=False,
            timeout=limits,
        )
        if response.status in _REDIRECTS and "Location" in response.headers:
            return await self._follow(request, response, limits)
        return response

    async def _follow(
        self,
        request: HttpRequest,
        response: aiohttp.ClientResponse,
        limits: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """Follow the redirects ``response`` begins, to the first answer that is not one.

        A redirect to another origin drops the request's own headers (the
        key and the provider's headers); 301, 302 and 303 turn a POST into a
        GET without a body, as browsers and aiohttp do.
        """
        assert self._session is not None
        method, url, headers, body = request.method, request.url, request.headers, request.body
        for _ in range(MAX_REDIRECTS):
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or not location:
                return response
            response.release()
            target = url.join(yarl.URL(location))
            if target.origin() != url.origin():
                headers = {}
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, body = "GET", None
            url = target
            response = await self._session.request(
                method, url, data=body, headers=headers, allow_redirects=False, timeout=limits
            )
        if response.status in _REDIRECTS and response.headers.get("Location"):
            response.release()
            raise ConnectionFailure(f"more than {MAX_REDIRECTS} redirects from {request.url}")
        return response

    def _timed_out(self) -> TimeoutFailure:
        return TimeoutFailure(
            f"no answer within {self._timeout_s:g} s; raise limits.timeout_s for slow models"
        )

    def _connection_failure(self, exc: aiohttp.ClientError) -> ConnectionFailure:
        connecting = isinstance(exc, aiohttp.ClientConnectionError)
        kind = "connection failed" if connecting else "HTTP client error"
        return ConnectionFailure(redact(f"{kind}: {exc}", self._secrets))


Handler = Callable[[HttpRequest], Awaitable[HttpResponse] | HttpResponse]


class MockTransport:
    """A ``Transport`` that answers every request with ``handler``; keeps what it was sent."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[HttpRequest] = []

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Record ``request``; return (or raise) what ``handler`` gives for it."""
        self.requests.append(request)
        response = self._handler(request)
        if isinstance(response, HttpResponse):
            return response
        return await response


async def chunks_of(parts: Sequence[bytes]) -> AsyncIterator[bytes]:
    """An async iterator over ``parts``: a streamed body for ``MockTransport`` answers."""
    for part in parts:
        yield part
