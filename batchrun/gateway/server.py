"""Serving the built-in gateway on 127.0.0.1: in the caller's loop, or in a thread.

``serve`` is an async context manager that yields the base URL of a running
gateway in the current event loop (used by ``provider: mock``).
``GatewayThread`` runs one in a thread of its own with its own loop (used by
the tests, so a CLI run in the main thread talks to it over a real socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator

from aiohttp import web

from batchrun.gateway.app import Gateway, GatewaySettings


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serve(gateway: Gateway, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run ``gateway`` in this loop; yield its base URL (``http://host:port/v1``)."""
    runner = web.AppRunner(
        gateway.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5
    )
    await runner.setup()
    sock = _bind(host, port)
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        await runner.cleanup()
        sock.close()


class GatewayThread:
    """A gateway served from a background thread; ``url`` is set once it listens."""

    def __init__(self, settings: GatewaySettings | None = None, port: int = 0) -> None:
        self.gateway = Gateway(settings)
        self.url = ""
        self._port = port
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="batchrun-gateway", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> GatewayThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced to the thread that started us
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self.gateway, port=self._port) as url:
            self.url = url
            self._ready.set()
            await self._stop.wait()
