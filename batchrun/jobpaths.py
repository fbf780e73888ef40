"""Paths in a job made relative to the job file's folder (URLs of object storage kept)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchrun.objstore import is_remote
from batchrun.providers import HttpProvider

if TYPE_CHECKING:
    from batchrun.config import Job


def rebase(job: Job, folder: Path) -> Job:
    """``job`` with its relative paths made relative to ``folder`` (the job file's).

    A job then reads and writes the same files from whatever folder it is
    run (cron runs in the home folder): ``input.path``, ``output.path``,
    ``prices_file`` and ``provider.api_key_file``. Absolute paths and ``~``
    are kept as they are.
    """

    def under(value: str) -> str:
        if is_remote(value):
            return value
        expanded = Path(value).expanduser()
        if expanded.is_absolute():
            return str(expanded)
        # normpath, not resolve(): "jobs/../results" reads "results", and links stay links.
        return os.path.normpath(folder / expanded)

    update: dict[str, Any] = {
        "input": job.input.model_copy(update={"path": under(job.input.path)}),
        "output": job.output.model_copy(
            update={
                "path": under(job.output.path),
                "local_dir": under(job.output.local_dir) if job.output.local_dir else None,
            }
        ),
    }
    if job.prices_file is not None:
        update["prices_file"] = under(job.prices_file)
    provider = job.provider
    if isinstance(provider, HttpProvider) and provider.api_key_file is not None:
        update["provider"] = provider.model_copy(
            update={"api_key_file": under(provider.api_key_file)}
        )
    return job.model_copy(update=update)
