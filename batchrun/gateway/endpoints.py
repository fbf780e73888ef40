"""The gateway's routes other than generation: model lists, billing, and what is missing.

``Endpoints`` answers ``GET /v1/models`` in the three list shapes (S27),
``/v1/models/{id}``, the billing routes with one-api's and new-api's numbers
(S28: 500,000 quota = $1, cents in ``total_usage``), and the routes these
gateways lack (S29). Keys are checked by the auth middleware, not here.
"""

from __future__ import annotations

from aiohttp import web

from batchrun.gateway.refusals import REFUSALS, FaultContext
from batchrun.gateway.request_ids import current_id
from batchrun.gateway.settings import DEFAULT_MODELS, GatewaySettings
from batchrun.wire import JsonObject

QUOTA_PER_USD = 500_000


class Endpoints:
    """Handlers of the non-generation routes of one gateway."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings

    async def list_models(self, request: web.Request) -> web.Response:
        """``GET /v1/models`` in the list shape of one-api, new-api (2025) or new-api (2026)."""
        shape = self.settings.models_shape
        if shape == "missing":
            return web.Response(status=404, text="404 page not found")
        data = [
            {
                "id": model,
                "object": "model",
                "created": 1626777600,
                "owned_by": "batchrun",
                "permission": None,
                "root": model,
                "parent": None,
            }
            for model in self.settings.offered()
        ]
        if shape == "newapi":
            return web.json_response({"success": True, "data": data})
        if shape == "newapi2026":
            return web.json_response({"success": True, "object": "list", "data": data})
        return web.json_response({"object": "list", "data": data})

    async def show_model(self, request: web.Request) -> web.Response:
        """``GET /v1/models/{id}``: only a static table; 200 with an error for the rest (S27)."""
        model = request.match_info["model"]
        if model in DEFAULT_MODELS[:4]:
            return web.json_response({"id": model, "object": "model", "owned_by": "batchrun"})
        error = {
            "message": f"The model '{model}' does not exist",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
        return web.json_response({"error": error})

    async def subscription(self, request: web.Request) -> web.Response:
        """``/dashboard/billing/subscription``: the key's limit in dollars (S28)."""
        if self.settings.billing != "dashboard":
            return web.json_response({"error": {"message": "Invalid URL", "type": "x"}}, status=404)
        limit = self.settings.balance_usd
        return web.json_response(
            {
                "object": "billing_subscription",
                "has_payment_method": True,
                "soft_limit_usd": limit,
                "hard_limit_usd": limit,
                "system_hard_limit_usd": limit,
                "access_until": 0,
            }
        )

    async def usage(self, request: web.Request) -> web.Response:
        """``/dashboard/billing/usage``: what was used, in cents (S28)."""
        return web.json_response({"object": "list", "total_usage": self.settings.used_usd * 100})

    async def token_usage(self, request: web.Request) -> web.Response:
        """new-api's ``/api/usage/token/`` in quota units (500,000 = $1)."""
        if self.settings.billing != "token_usage":
            return web.Response(status=404, text="404 page not found")
        limit, used = self.settings.balance_usd, self.settings.used_usd
        data: JsonObject = {
            "object": "token_usage",
            "name": "key",
            "total_granted": limit * QUOTA_PER_USD,
            "total_used": used * QUOTA_PER_USD,
            "total_available": (limit - used) * QUOTA_PER_USD,
            "unlimited_quota": limit >= 100_000_000,
            "expires_at": 0,
        }
        return web.json_response({"code": True, "message": "ok", "data": data})

    async def user_self(self, request: web.Request) -> web.Response:
        """``/api/user/self`` (the access token is checked by the auth middleware)."""
        left, used = self.settings.balance_usd - self.settings.used_usd, self.settings.used_usd
        data = {
            "id": 1,
            "username": "batchrun",
            "group": "default",
            "quota": int(left * QUOTA_PER_USD),
            "used_quota": int(used * QUOTA_PER_USD),
            "request_count": 0,
        }
        return web.json_response({"success": True, "message": "", "data": data})

    async def invalid_url(self, request: web.Request) -> web.Response:
        """No Batch API on these gateways (S29)."""
        error = {
            "message": f"Invalid URL ({request.method} {request.path})",
            "type": "invalid_request_error",
            "param": "",
            "code": "",
        }
        return web.json_response({"error": error}, status=404)

    async def no_channel(self, request: web.Request) -> web.Response:
        """``/v1/files``: the distributor answers first, for the empty model (S29)."""
        return REFUSALS["S09"](FaultContext(request_id=current_id(), model=""))
