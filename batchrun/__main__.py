"""``python -m batchrun``."""

from batchrun.cli import entry

entry()
