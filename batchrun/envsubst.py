"""``${VAR}`` interpolation, only in the fields of a job that need the environment.

``interpolate`` promises that ``${VAR}`` and ``${VAR:-default}`` are filled
in only in the provider block (base URL, key variable, key file, headers)
and in file paths (``input.path``, ``output.path``, ``prices_file``) and
in ``limits.share`` (a Redis URL).
Anywhere else, above all in prompt templates and parameters, ``${VAR}`` is
refused: a template that said ``${OPENAI_API_KEY}`` would otherwise send
the key to the gateway and store it in the results.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from batchrun.errors import JobError

ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Field paths (tuples of keys, "*" for any one key) where the environment is read.
_ALLOWED: tuple[tuple[str, ...], ...] = (
    ("provider", "base_url"),
    ("provider", "api_key_env"),
    ("provider", "api_key_file"),
    ("provider", "headers", "*"),
    ("input", "path"),
    ("output", "path"),
    ("output", "local_dir"),
    ("limits", "share"),
    ("prices_file",),
)
ALLOWED_FIELDS = (
    "provider.base_url, provider.api_key_env, provider.headers, input.path, output.path, "
    "limits.share"
)

Loc = tuple[str | int, ...]


def interpolate(
    value: Any,
    env: Mapping[str, str],
    where: Callable[[Loc], str],
    loc: Loc = (),
) -> Any:
    """``value`` with ``${VAR}`` filled in where allowed; ``JobError`` elsewhere or if unset.

    ``where(loc)`` gives the ``file:line: field`` prefix of an error.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, env, where, (*loc, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, where, (*loc, i)) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    found = ENV_PATTERN.search(value)
    if found is None:
        return value
    if not _allowed(loc):
        raise JobError(
            f"{where(loc)}: ${{{found.group(1)}}} is not filled in here; environment variables "
            f"are read only in {ALLOWED_FIELDS}, never in templates or parameters"
        )

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise JobError(
            f"{where(loc)}: environment variable {name} is not set; "
            f"export it or write ${{{name}:-default}}"
        )

    return ENV_PATTERN.sub(substitute, value)


def _allowed(loc: Sequence[str | int]) -> bool:
    for pattern in _ALLOWED:
        if len(pattern) == len(loc) and all(
            p in ("*", str(part)) for p, part in zip(pattern, loc, strict=True)
        ):
            return True
    return False
