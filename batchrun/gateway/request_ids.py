"""Request ids as one-api/new-api make them, on every response (``X-Oneapi-Request-Id``).

``RequestIds`` makes ids of the form ``YYYYMMDDhhmmss`` + a counter + a tag;
its middleware gives each request one before any other middleware runs
(``current_id()`` reads it: a context variable, as the handler runs in the
request's own task) and puts it on the response unless already sent.
"""

from __future__ import annotations

import contextvars
import itertools
import time

from aiohttp import web
from aiohttp.typedefs import Middleware

from batchrun.gateway.stats import Handler

REQUEST_ID = "X-Oneapi-Request-Id"
_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def current_id() -> str:
    """The id of the request being handled in this task."""
    return _CURRENT.get()


class RequestIds:
    """A source of request ids, and the middleware that hands them out."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._stamp_second = -1
        self._stamp = ""

    def next(self) -> str:
        """A new id: the UTC second, then a counter."""
        now = int(time.time())
        if now != self._stamp_second:
            self._stamp_second = now
            self._stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
        return f"{self._stamp}{next(self._ids):09d}batchrun"

    def middleware(self) -> Middleware:
        """A middleware that gives each request an id and each response its header."""

        @web.middleware
        async def tag(request: web.Request, handler: Handler) -> web.StreamResponse:
            request_id = self.next()
            _CURRENT.set(request_id)
            response = await handler(request)
            if not response.prepared:
                response.headers[REQUEST_ID] = request_id
            return response

        return tag
