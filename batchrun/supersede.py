"""Rows the job no longer asks for: made with settings it has since changed.

A row is superseded when the job still asks for its (prompt id, model,
sample) but under another request key (the model's params or format, or
the prompt template, changed), or no longer asks for that many samples.
Rows of models or prompts the job dropped are kept as they are. At
compaction superseded rows leave the output and are appended to
``<stem>.superseded.parquet`` beside it, so nothing paid for is lost and no
figure counts a model twice. Finding them takes a pass over the output's
keys, so the plan's fingerprint is kept beside the output (``.<name>.plan``)
and the pass is made only when it changed. ``set_aside`` moves a whole
output aside for ``--fresh``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import polars as pl

from batchrun.dataset import PROMPT_ID
from batchrun.plan import Plan, request_key
from batchrun.store import part_files, write_parquet_atomic


def sidecar_path(output: Path) -> Path:
    """Where the superseded rows of ``output`` are kept."""
    return output.with_name(f"{output.stem}.superseded{output.suffix}")


# Rows of the earlier results checked at a time.
_BATCH_ROWS = 50_000


def fingerprint_path(output: Path) -> Path:
    """Where the fingerprint of the plan that last wrote ``output`` is kept."""
    return output.with_name(f".{output.name}.plan")


def fingerprint(plan: Plan) -> str:
    """A digest of what the plan sends: every model's settings, every prompt, the samples."""
    digest = hashlib.blake2b(digest_size=16)
    for model in plan.models:
        digest.update(model.name.encode() + b"\x00" + model.key_prefix + b"\x00")
    digest.update(f"{plan.job.samples}:{plan.rows}:{pl.__version__}:".encode())
    digest.update(str(plan.table.digest).encode())
    return digest.hexdigest()


def set_aside_superseded(output: Path, plan: Plan) -> set[str]:
    """Move rows of superseded settings to the sidecar; the request keys moved.

    The caller drops those keys from the output when it compacts. Nothing is
    read when the plan is the one that last wrote the output.
    """
    keys = superseded_keys(output, plan)
    if keys:
        sources = ([output] if output.exists() else []) + part_files(output)
        rows = pl.concat(
            [pl.scan_parquet(s).filter(pl.col("request_key").is_in(keys)) for s in sources],
            how="diagonal_relaxed",
        ).collect()
        sidecar = sidecar_path(output)
        if sidecar.exists():
            rows = pl.concat([pl.read_parquet(sidecar), rows], how="diagonal_relaxed")
        write_parquet_atomic(rows, sidecar)
    return keys


def superseded_keys(output: Path, plan: Plan) -> set[str]:
    """The request keys ``set_aside_superseded`` would move, moving nothing."""
    sources = ([output] if output.exists() else []) + part_files(output)
    if not sources or _read(fingerprint_path(output)) == fingerprint(plan):
        return set()
    return _superseded(sources, plan)


def record_fingerprint(output: Path, plan: Plan) -> None:
    """Remember that ``plan`` wrote ``output`` (after its compaction succeeded)."""
    marker = fingerprint_path(output)
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(fingerprint(plan))
    tmp.replace(marker)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _superseded(sources: list[Path], plan: Plan) -> set[str]:
    """Keys of rows whose (prompt, model, sample) the plan now sends under another key.

    The rows are read a batch at a time, and only their prompts are rendered,
    so a first run of a million requests holds one batch of them, not all.
    """
    prefixes = {model.name: model.key_prefix for model in plan.models}
    samples = plan.job.samples
    found: set[str] = set()
    for source in sources:
        scan = (
            pl.scan_parquet(source)
            .select("request_key", PROMPT_ID, "model", "sample")
            .filter(pl.col("model").is_in(list(prefixes)))
        )
        for batch in scan.collect_batches(chunk_size=_BATCH_ROWS):
            sent = plan.table.sent(batch.get_column(PROMPT_ID)).alias("__sent")
            rows = batch.with_columns(sent).filter(sent.is_not_null())
            for key, prompt_id, model, sample, messages in rows.iter_rows():
                if (
                    sample >= samples
                    or request_key(prefixes[model], prompt_id, messages.encode(), sample) != key
                ):
                    found.add(key)
    return found
