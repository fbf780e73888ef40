"""The built-in OpenAI-compatible gateway simulator (``provider: mock``, ``batchrun gateway``).

``scenario_help`` renders the fault scenarios (and the key rule) for
``--help``; ``parse_fault`` reads ``--fault S13=0.05`` into a
``fault_rates`` entry and ``parse_latency`` reads ``--latency-ms`` values
(``200`` or ``model-a=350``) into ``latency_ms`` / ``model_latency_ms``.
"""

from batchrun.gateway.app import Gateway
from batchrun.gateway.scenarios import SCENARIOS, Scenario, parse_fault, scenario_help
from batchrun.gateway.server import GatewayThread, serve
from batchrun.gateway.settings import DEFAULT_MODELS, GatewaySettings, parse_latency
from batchrun.gateway.stats import GatewayStats

__all__ = [
    "DEFAULT_MODELS",
    "SCENARIOS",
    "Gateway",
    "GatewaySettings",
    "GatewayStats",
    "GatewayThread",
    "Scenario",
    "parse_fault",
    "parse_latency",
    "scenario_help",
    "serve",
]
