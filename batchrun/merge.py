"""Joining the outputs of a sharded run into one results file.

``merge_shards`` promises one row per request key (the ok row, then the
latest), every column of every shard, written atomically: a reader sees
the old file or the whole new one. The shard files are left as they are.
Shards of an object-storage output (``NAME/shard-I-of-N.parquet``, see
``batchrun.objstore``) are found by listing the store and read through a
local copy; ``write_merged`` puts the merged file at a local path or, by an
atomic upload, at an object URL.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import polars as pl

from batchrun.errors import JobError
from batchrun.objstore import download, is_remote, list_objects, shard_template, upload
from batchrun.store import new_run_id, write_parquet_atomic


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


def shard_objects(url: str) -> dict[str, str]:
    """The shard objects ``--shard I/N`` runs of the output ``url`` uploaded, by ``I-of-N``.

    In shard order; ``OSError`` when the store cannot be listed.
    """
    template = shard_template(url)
    pieces = [re.escape(piece) for piece in template.split("{shard}")]
    pattern = re.compile(
        pieces[0] + r"(?P<i>\d+)-of-(?P<n>\d+)" + r"(?P=i)-of-(?P=n)".join(pieces[1:])
    )
    folder = template.split("{shard}")[0].rsplit("/", 1)[0]
    found = []
    for candidate in list_objects(folder):
        match = pattern.fullmatch(candidate)
        if match is not None:
            found.append((int(match["i"]), f"{match['i']}-of-{match['n']}", candidate))
    return {shard: object_url for _, shard, object_url in sorted(found)}


def fetch_shards(objects: dict[str, str], folder: Path) -> list[Path]:
    """Copy the shard ``objects`` into ``folder`` as ``shard-I-of-N.parquet``, in order."""
    copies = []
    for shard, url in objects.items():
        copy = folder / f"shard-{shard}.parquet"
        download(url, copy)
        copies.append(copy)
    return copies


def fetch_remote_shards(url: str, folder: Path) -> list[Path]:
    """Local copies, in ``folder``, of the shard objects of the output ``url``, in order.

    ``JobError`` when the store cannot be listed or read.
    """
    try:
        return fetch_shards(shard_objects(url), folder)
    except OSError as exc:
        raise JobError(f"cannot read the shard outputs: {exc}", field="output.path") from None


def write_merged(shards: list[Path], target: str | Path) -> int:
    """Merge ``shards`` into ``target``, a local path or an object URL; the rows written.

    Either way a reader sees the old file or the whole new one.
    """
    if not is_remote(str(target)):
        return merge_shards(shards, Path(target))
    with tempfile.TemporaryDirectory(prefix="batchrun-merge-") as tmp:
        merged = Path(tmp) / "merged.parquet"
        rows = merge_shards(shards, merged)
        upload(merged, str(target), new_run_id())
    return rows
