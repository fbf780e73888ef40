"""Joining the outputs of a sharded run into one results file.

``merge_shards`` promises one row per request key (the ok row, then the
latest), every column of every shard, written atomically: a reader sees
the old file or the whole new one. The shard files are left as they are.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from batchrun.errors import JobError
from batchrun.store import write_parquet_atomic


def shard_files(output: Path) -> list[Path]:
    """The shard outputs of ``output`` (``NAME.shard-I-of-N.parquet``), in shard order."""
    stem = output.name.removesuffix(".parquet")
    found = sorted(output.parent.glob(f"{stem}.shard-*-of-*.parquet"))
    return sorted(found, key=lambda p: int(p.name.rsplit(".shard-", 1)[1].split("-of-")[0]))


def merge_shards(shards: list[Path], output: Path) -> int:
    """Write the rows of ``shards`` into ``output``, one per request key; the rows written."""
    counts = {int(p.name.rsplit("-of-", 1)[1].removesuffix(".parquet")) for p in shards}
    if len(counts) > 1:
        raise JobError(
            "the shard files split the job in different ways "
            f"({', '.join(p.name for p in shards)}); merge the shards of one --shard I/N set"
        )
    merged = (
        pl.concat([pl.scan_parquet(p) for p in shards], how="diagonal_relaxed")
        .with_columns((pl.col("status") == "ok").alias("__ok"))
        .sort("__ok", "finished_at", nulls_last=False)
        .unique(subset="request_key", keep="last", maintain_order=True)
        .drop("__ok")
        .sort("prompt_id", "model", "sample")
        .collect()
    )
    write_parquet_atomic(merged, output)
    return merged.height
