"""A response class that lets aioresponses 0.7.x build responses under aiohttp >= 3.14.

aiohttp 3.14 added a required ``stream_writer`` argument to
``ClientResponse``; aioresponses does not pass it yet. Tests hand this class
to aioresponses as ``response_class``; on older aiohttp it changes nothing.
"""

from __future__ import annotations

import inspect
from typing import Any
from unittest.mock import Mock

from aiohttp import ClientResponse

_NEEDS_WRITER = "stream_writer" in inspect.signature(ClientResponse.__init__).parameters


class CompatResponse(ClientResponse):
    """``ClientResponse`` with a stand-in stream writer when aiohttp requires one."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        if _NEEDS_WRITER and "stream_writer" not in kwargs:
            kwargs["stream_writer"] = Mock(output_size=0)
        super().__init__(method, url, **kwargs)
