"""Strict YAML for job files: bounded size, no aliases, no duplicate keys.

``read_yaml`` promises the parsed document together with its node tree (for
line numbers), or a one-line ``JobError`` naming the file and line. A job
file is small and hand-written, so anything a hand-written job never needs
and an attacker loves is refused: files over ``MAX_JOB_BYTES``, anchors and
aliases (an alias bomb expands a few hundred bytes into gigabytes), and a
key given twice in one mapping (YAML would silently keep the second).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent

from batchrun.errors import JobError

MAX_JOB_BYTES = 10 * 1024**2


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses aliases while composing, before anything expands."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise JobError(
                f"{self.name}:{event.start_mark.line + 1}: YAML aliases (*{event.anchor}) "
                "are not allowed in a job file; write the value out"
            )
        return super().compose_node(parent, index)


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None, bytes]:
    """The document at ``path``, its node tree and its raw bytes; ``JobError`` if refused."""
    raw = _read_bounded(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JobError(f"{path}: the job file is not UTF-8 text") from None
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_duplicate_keys(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise JobError(f"{path}:{line}: YAML syntax error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise JobError(f"{path}: YAML error: {exc}") from None
    finally:
        loader.dispose()
    return data, node, raw


def _read_bounded(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_JOB_BYTES + 1)
    except FileNotFoundError:
        raise JobError(f"{path}: no such job file") from None
    except IsADirectoryError:
        raise JobError(f"{path}: is a folder, not a job file") from None
    except OSError as exc:
        raise JobError(f"{path}: cannot read the job file ({exc.strerror})") from None
    if len(raw) > MAX_JOB_BYTES:
        raise JobError(
            f"{path}: the job file is over {MAX_JOB_BYTES // 1024**2} MB; a job file holds "
            "settings, not data: put prompts in the input file"
        )
    return raw


def _refuse_duplicate_keys(root: yaml.Node, path: Path) -> None:
    """``JobError`` at the line of the second occurrence of a key in any mapping."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise JobError(
                        f"{path}:{line}: the key {key!r} is given twice in one mapping "
                        f"(first on line {seen[key]}); keep one"
                    )
                seen[key] = line
                stack.append(value_node)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int:
    """The 1-based line of the deepest node of ``loc`` that exists in the YAML tree."""
    node = root
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    child = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def field_lines(root: yaml.Node | None) -> dict[str, int]:
    """The 1-based line of every key in the document, by dotted path."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, loc: tuple[str | int, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                here = (*loc, str(key_node.value))
                lines[dotted(here)] = key_node.start_mark.line + 1
                walk(value_node, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, child in enumerate(node.value):
                here = (*loc, index)
                lines[dotted(here)] = child.start_mark.line + 1
                walk(child, here)

    if root is not None:
        walk(root, ())
    return lines


def dotted(loc: Sequence[str | int]) -> str:
    """``("models", 1, "id")`` as ``models[1].id``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
