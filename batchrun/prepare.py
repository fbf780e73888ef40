"""Everything a run needs that takes no network: the job checked end to end.

``prepare`` loads and validates the job, reads the data, compiles the
templates, builds the plan, resolves the output path, checks that its
folder is writable and that the key is set. Any mistake there is a
``JobError`` located at its file and line, and nothing has been sent.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from batchrun.batch.mode import batch_models
from batchrun.config import HttpProvider, Job, LoadedJob, load_job, resolve_api_key
from batchrun.dataset import read_dataset
from batchrun.errors import JobError
from batchrun.objstore import is_remote, local_copy, sharded_url
from batchrun.plan import Plan, build_plan
from batchrun.pricing import PriceTable, load_prices
from batchrun.templates import compile_prompt, screen_rows

# Below this much free space in the output's folder a run is refused before it starts.
MIN_FREE_BYTES = 50 * 1024**2


@dataclass
class Prepared:
    """A job checked end to end and ready to send."""

    loaded: LoadedJob
    plan: Plan
    output: Path
    api_key: str | None
    base_url: str | None
    prices: PriceTable
    key_problem: str | None = None
    # For an object-storage output.path: the object this run uploads ``output`` to.
    remote: str | None = None

    @property
    def job(self) -> Job:
        """The validated job."""
        return self.loaded.job


def resolve_output(
    template: str,
    job_name: str,
    now: datetime | None = None,
    shard: tuple[int, int] | None = None,
) -> Path:
    """The output path with ``{name}``, ``{date}``, ``{datetime}`` (UTC) and ``{shard}``.

    A sharded run whose path has no ``{shard}`` gets ``.shard-I-of-N`` before
    ``.parquet``, so shards never share an output.
    """
    moment = now or datetime.now(UTC)
    shard_text = f"{shard[0]}-of-{shard[1]}" if shard else "all"
    if shard and "{shard}" not in template:
        template = template.removesuffix(".parquet") + ".shard-{shard}.parquet"
    return Path(
        template.format(
            name=job_name,
            date=moment.strftime("%Y-%m-%d"),
            datetime=moment.strftime("%Y-%m-%dT%H%M%SZ"),
            shard=shard_text,
        )
    )


def remote_output(template: str, job_name: str, now: datetime | None = None) -> str:
    """An object-storage ``output.path`` with ``{name}``, ``{date}`` and ``{datetime}`` filled."""
    moment = now or datetime.now(UTC)
    return template.format(
        name=job_name,
        date=moment.strftime("%Y-%m-%d"),
        datetime=moment.strftime("%Y-%m-%dT%H%M%SZ"),
        shard="{shard}",
    )


def prepare(
    job_path: str | Path,
    shard: tuple[int, int] | None = None,
    *,
    require_key: bool = True,
    check_output: bool = True,
) -> Prepared:
    """Check the whole job without sending anything; ``JobError`` on the first mistake.

    With ``require_key=False`` a missing key is kept in ``key_problem``
    instead, so ``validate`` can still show the plan. With
    ``check_output=False`` the output folder is neither checked nor created
    (for read-only commands).
    """
    loaded = load_job(job_path)
    job = loaded.job
    try:
        frame = read_dataset(job.input)
        template = compile_prompt(job.prompt)
        frame, template = screen_rows(job, frame, template)
        plan = build_plan(job, frame, template)
        batch_models(job, plan.models)  # JobError for a batch-mode model no batch API takes
        if job.scores:
            _check_scores(job, frame.columns)
        prices = load_prices(job)
    except JobError as exc:
        raise loaded.locate(exc) from None
    remote = None
    if is_remote(job.output.path):
        remote = sharded_url(remote_output(job.output.path, job.name), shard)
        cache = Path(job.output.local_dir or loaded.path.parent / ".batchrun-cache")
        output = local_copy(remote, cache)
    else:
        output = resolve_output(job.output.path, job.name, shard=shard)
    if check_output:
        try:
            check_writable(output)
        except JobError as exc:
            raise loaded.locate(exc) from None
    api_key: str | None = None
    key_problem: str | None = None
    try:
        api_key = resolve_api_key(job)
    except JobError as exc:
        if require_key:
            raise loaded.locate(exc) from None
        key_problem = str(loaded.locate(exc))
    base_url = job.provider.base_url if isinstance(job.provider, HttpProvider) else None
    return Prepared(
        loaded=loaded,
        plan=plan,
        output=output,
        api_key=api_key,
        base_url=base_url,
        prices=prices,
        key_problem=key_problem,
        remote=remote,
    )


def _check_scores(job: Job, columns: list[str]) -> None:
    """Scores must find their columns, and judge rubrics must compile (``JobError``)."""
    from batchrun.judge import check_rubric
    from batchrun.scoring import check_expected_columns

    check_expected_columns(job.scores, columns)
    for spec in job.scores:
        if spec.grader == "judge":
            check_rubric(spec, columns)


def check_writable(output: Path) -> None:
    """``JobError`` unless ``output`` is a file path in a writable folder with room."""
    if output.is_dir():
        raise JobError(
            f"{output} is a folder; give a file name ending in .parquet", field="output.path"
        )
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".batchrun-check-"):
            pass
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise JobError(
            f"cannot write to the folder {folder} ({exc.strerror or exc}); "
            "choose a writable folder",
            field="output.path",
        ) from None
    if free < MIN_FREE_BYTES:
        raise JobError(
            f"only {free // 1024**2} MB free in {folder}; "
            f"make at least {MIN_FREE_BYTES // 1024**2} MB of room first",
            field="output.path",
        )
