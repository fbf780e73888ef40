"""The built-in OpenAI-compatible gateway simulator (``provider: mock``, ``batchrun gateway``)."""

from batchrun.gateway.app import Gateway, GatewaySettings, GatewayStats
from batchrun.gateway.server import GatewayThread, serve

__all__ = ["Gateway", "GatewaySettings", "GatewayStats", "GatewayThread", "serve"]
