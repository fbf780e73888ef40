"""Who may call the built-in gateway: one middleware, a guard per route.

The rule (stated the same in ``scenarios.KEY_RULE``): a key comes in
``Authorization`` (``Bearer `` and ``sk-`` optional; generation routes also
take ``x-api-key`` and ``x-goog-api-key``). No key is refused; without a
configured key list any non-empty key passes, with one only listed keys do.
Each route names its guard: ``KEY`` (401 as scenario S07), ``DASHBOARD``
(one-api's dashboard: HTTP 200 with an error body), ``ACCESS_TOKEN``
(``/api/user/self``: the system access token, 200 with success false), or
none.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from batchrun.gateway.refusals import REFUSALS, FaultContext
from batchrun.gateway.request_ids import current_id
from batchrun.gateway.settings import GatewaySettings
from batchrun.gateway.stats import GatewayStats, Handler


class Guard(enum.Enum):
    """How a route checks its caller."""

    KEY = "key"
    DASHBOARD = "dashboard"
    ACCESS_TOKEN = "access_token"


def authorization_of(request: web.Request, generation: bool) -> str:
    """The ``Authorization`` value, or on generation routes the other key headers as one."""
    auth = request.headers.get("Authorization", "")
    if generation:
        for other in ("x-api-key", "x-goog-api-key"):
            if not auth and request.headers.get(other):
                auth = "Bearer " + request.headers[other]
    return auth


def key_accepted(settings: GatewaySettings, authorization: str) -> bool:
    """Whether ``authorization`` carries a key this gateway accepts."""
    key = authorization.removeprefix("Bearer ").strip().removeprefix("sk-")
    if not key:
        return False
    return settings.keys is None or key in {k.removeprefix("sk-") for k in settings.keys}


def _refusal(guard: Guard, request_id: str) -> web.Response:
    if guard is Guard.KEY:
        return REFUSALS["S07"](FaultContext(request_id=request_id, model=""))
    if guard is Guard.DASHBOARD:
        return web.json_response({"error": {"message": "无效的令牌", "type": "one_api_error"}})
    return web.json_response({"success": False, "message": "无权进行此操作，access token 无效"})


def auth_middleware(
    settings: GatewaySettings,
    stats: GatewayStats,
    guard_of: Callable[[web.Request], tuple[Guard | None, bool]],
) -> Middleware:
    """A middleware applying each route's guard; generation requests' keys are recorded."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        guard, generation = guard_of(request)
        authorization = authorization_of(request, generation)
        if generation:
            stats.header_names.update(name.lower() for name in request.headers)
            stats.authorizations.add(authorization)
        if guard is Guard.ACCESS_TOKEN:
            token = authorization.removeprefix("Bearer ").strip()
            if token != settings.access_token:
                return _refusal(guard, current_id())
        elif guard is not None and not key_accepted(settings, authorization):
            return _refusal(guard, current_id())
        return await handler(request)

    return check
