"""Object storage for inputs and outputs: ``s3://``, ``gs://`` and ``az://`` URLs.

A job whose ``output.path`` is such a URL runs on a local copy: the parts
and the compacted output live in a local folder (``output.local_dir``, by
default ``.batchrun-cache`` beside the job file), and the compacted output
is uploaded when the run ends (and at each checkpoint while it sends,
``batchrun.checkpoint_upload``), atomically: written under a temporary key,
copied onto its name, the temporary key deleted, so a reader sees the old
object or the whole new one. A sharded run writes ``NAME/shard-I-of-N.parquet``:
the shards of one run are one dataset, a folder of Parquet files read as
one table (``pl.read_parquet("s3://bucket/NAME/*.parquet")``); ``batchrun
merge`` finds them by listing the folder. A run on a machine without the
local copy starts from the uploaded one.

Credentials come from the standard environment variables of each store
(``AWS_*`` with ``AWS_ENDPOINT_URL`` for S3-compatible stores,
``GOOGLE_*``, ``AZURE_*``); Polars reads inputs with the same ones. Keys
and temporary objects of batchrun live beside the dataset, under
``FOLDER.batchrun/``, never inside it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchrun.errors import JobError

SCHEMES = ("s3", "gs", "az")


def is_remote(path: str) -> bool:
    """Whether ``path`` is an object-storage URL batchrun reads and writes."""
    return urlsplit(path).scheme in SCHEMES and "://" in path


def split(url: str) -> tuple[str, str]:
    """``(store URL, key)``: ``s3://bucket`` and ``a/b.parquet`` for ``s3://bucket/a/b.parquet``.

    Azure URLs name the account's container first: ``az://container/key``.
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


def sharded_url(url: str, shard: tuple[int, int] | None) -> str:
    """The object a run (or shard I of N) writes: ``NAME/shard-I-of-N.parquet`` when sharded.

    A URL with ``{shard}`` gets ``I-of-N`` (or ``all``) there instead.
    """
    if "{shard}" in url:
        return url.replace("{shard}", f"{shard[0]}-of-{shard[1]}" if shard else "all")
    if shard is None:
        return url
    return shard_template(url).replace("{shard}", f"{shard[0]}-of-{shard[1]}")


def shard_template(url: str) -> str:
    """The object of shard I of N of ``url``, with ``{shard}`` where ``I-of-N`` goes."""
    return url if "{shard}" in url else f"{url.removesuffix('.parquet')}/shard-{{shard}}.parquet"


def side_key(key: str, suffix: str) -> str:
    """A key of batchrun's own beside the dataset of ``key`` (never inside its folder)."""
    folder, _, name = key.rpartition("/")
    return f"{folder or '_'}.batchrun/{name}{suffix}"


def local_copy(url: str, cache_dir: Path) -> Path:
    """Where the local copy of the object ``url`` lives under ``cache_dir``."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return cache_dir / digest / url.rsplit("/", 1)[-1]


def store_of(url: str) -> Any:
    """An obstore store for the bucket (or container) of ``url``, credentials from the env."""
    from obstore.store import from_url

    base, _ = split(url)
    try:
        return from_url(base)
    except Exception as exc:  # obstore raises its own kinds for bad URLs and settings
        raise JobError(f"cannot open {base}: {_first_line(exc)}", field="output.path") from None


def exists(url: str) -> bool:
    """Whether the object ``url`` exists."""
    import obstore

    _, key = split(url)
    try:
        obstore.head(store_of(url), key)
    except FileNotFoundError:
        return False
    return True


def list_objects(url: str) -> list[str]:
    """The URLs of every object under the folder ``url``, at any depth.

    ``OSError`` (with the store's reason) when the store refuses.
    """
    import obstore

    base, prefix = split(url)
    try:
        listed = obstore.list(store_of(url), prefix=prefix.strip("/") or None).collect()
    except Exception as exc:  # the store's errors carry no common base but Exception
        raise OSError(f"cannot list {url}: {_first_line(exc)}") from None
    return sorted(f"{base}/{item['path']}" for item in listed)


def download(url: str, target: Path) -> None:
    """Copy the object ``url`` to ``target`` (via a temporary file beside it).

    ``FileNotFoundError`` when there is no such object; ``OSError`` (with
    the store's reason) when the store refuses.
    """
    import obstore

    _, key = split(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.download")
    try:
        data = obstore.get(store_of(url), key).bytes()
    except FileNotFoundError:
        raise
    except Exception as exc:  # the store's errors carry no common base but Exception
        raise OSError(f"cannot download {url}: {_first_line(exc)}") from None
    partial.write_bytes(bytes(data))
    partial.replace(target)


def upload(source: Path, url: str, run_id: str) -> None:
    """Put ``source`` at ``url`` atomically: a temporary key, copied onto the name, removed.

    ``OSError`` (with the store's reason) when the store refuses.
    """
    import obstore

    store = store_of(url)
    _, key = split(url)
    temporary = side_key(key, f".{run_id}.uploading")
    try:
        obstore.put(store, temporary, source)
        obstore.copy(store, temporary, key)
        obstore.delete(store, temporary)
    except FileNotFoundError:
        raise
    except Exception as exc:  # the store's errors carry no common base but Exception
        raise OSError(f"cannot upload {source} to {url}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
