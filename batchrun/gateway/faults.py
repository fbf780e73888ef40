"""Compatibility names for the fault catalogue, which now lives in ``scenarios.py``."""

from batchrun.gateway.refusals import FaultBuilder, FaultContext
from batchrun.gateway.scenarios import ANSWER_SCENARIOS, FAULTS, describe_faults

__all__ = ["ANSWER_SCENARIOS", "FAULTS", "FaultBuilder", "FaultContext", "describe_faults"]
