"""``--shard auto``: which slice of the work this copy runs, from its scheduler's variables.

``auto_shard`` promises ``(index, count)`` with ``0 <= index < count`` read from
the first scheduler it recognises, or a ``ValueError`` that
says which variable is missing or wrong:

* Kubernetes Indexed Job: ``JOB_COMPLETION_INDEX`` (0-based), the count in
  ``BATCHRUN_SHARD_COUNT`` (set it to the Job's ``completions``).
* Slurm job array: ``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_TASK_COUNT``,
  the ID made 0-based by ``SLURM_ARRAY_TASK_MIN`` (``--array=1-4`` works too).
* Anything else (a GitHub Actions matrix, cron on several hosts):
  ``BATCHRUN_SHARD_INDEX`` and ``BATCHRUN_SHARD_COUNT``.
"""

from __future__ import annotations

from collections.abc import Mapping


def auto_shard(env: Mapping[str, str]) -> tuple[int, int]:
    """This copy's shard ``(index, count)`` from ``env``; ``ValueError`` naming what is wrong."""
    if "JOB_COMPLETION_INDEX" in env:
        index = _number(env, "JOB_COMPLETION_INDEX")
        count = _number(env, "BATCHRUN_SHARD_COUNT", "set it to the Indexed Job's completions")
        return _checked(index, count, "JOB_COMPLETION_INDEX")
    if "SLURM_ARRAY_TASK_ID" in env:
        task = _number(env, "SLURM_ARRAY_TASK_ID")
        count = _number(env, "SLURM_ARRAY_TASK_COUNT")
        first = _number(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
        return _checked(task - first, count, "SLURM_ARRAY_TASK_ID")
    if "BATCHRUN_SHARD_INDEX" in env:
        index = _number(env, "BATCHRUN_SHARD_INDEX")
        count = _number(env, "BATCHRUN_SHARD_COUNT")
        return _checked(index, count, "BATCHRUN_SHARD_INDEX")
    raise ValueError(
        "--shard auto: none of JOB_COMPLETION_INDEX (Kubernetes), SLURM_ARRAY_TASK_ID (Slurm) "
        "or BATCHRUN_SHARD_INDEX is set; give --shard I/N or set one of them"
    )


def _number(env: Mapping[str, str], name: str, hint: str = "") -> int:
    text = env.get(name)
    if text is None:
        raise ValueError(f"--shard auto: {name} is not set" + (f"; {hint}" if hint else ""))
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"--shard auto: {name}={text[:20]!r} is not a whole number") from None


def _checked(index: int, count: int, source: str) -> tuple[int, int]:
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"--shard auto: {source} gives shard {index} of {count}; it should be 0 to {count - 1}"
        )
    return index, count
