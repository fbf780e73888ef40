"""ARCHITECTURE.md is the picture of the code: it names every module, and only real ones."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "batchrun"


def named_modules() -> set[str]:
    """Every ``batchrun/...py`` path ARCHITECTURE.md names."""
    text = (REPO / "ARCHITECTURE.md").read_text()
    return set(re.findall(r"`(batchrun/[\w/]+\.py)`", text))


def real_modules() -> set[str]:
    """Every module of the package."""
    return {str(path.relative_to(REPO)) for path in PACKAGE.rglob("*.py")}


def test_every_module_is_named() -> None:
    """A module the picture does not name is a module nobody can find."""
    assert real_modules() - named_modules() == set()


def test_every_named_module_exists() -> None:
    """The picture names no module that is gone."""
    assert named_modules() - real_modules() == set()


def test_modules_and_functions_stay_small() -> None:
    """No module over 450 lines and no function over 60, as the architecture promises."""
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().splitlines()
        assert len(lines) <= 450, f"{path} has {len(lines)} lines"
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= 60, f"{path}:{node.lineno} {node.name} has {length} lines"
