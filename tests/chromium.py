"""Headless Chromium for the report tests: where it is, its flags, and when to skip."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_or_skip() -> str:
    """Chromium's path; skip (with the reason) without it, unless CI is set: then fail."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is needed for the report tests in CI (Debian's chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium); CI is unset")
    return CHROMIUM
