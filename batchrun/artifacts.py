"""Files answers carry (images, audio, video), written content-addressed beside the output.

``ArtifactStore`` promises: each file is checked by its magic number
against the type its answer promised (``magic.py``), bounded in size, and
written atomically as ``NAME.files/<sha256>.<ext>`` beside the output
``NAME.parquet``; a file already there (same bytes, same name) is never
written again. The paths the results name are relative to the output's
folder, so a results file and its files move together.

Bounds: one artifact at most ``MAX_ARTIFACT_BYTES`` (100 MiB), one run's
new files at most ``MAX_RUN_BYTES`` (2 GiB) in all; beyond either the row
fails with an ``artifact_too_large`` error and nothing is written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from batchrun.durable import write_atomic
from batchrun.errors import ArtifactError
from batchrun.magic import EXTENSIONS, canonical, same_kind, sniff

MAX_ARTIFACT_BYTES = 100 * 1024**2
MAX_RUN_BYTES = 2 * 1024**3


def files_dir(output: Path) -> Path:
    """The folder of ``output``'s artifacts: ``NAME.files`` beside ``NAME.parquet``."""
    return output.with_name(f"{output.stem}.files")


class ArtifactStore:
    """The artifacts of one output, with this run's byte budget."""

    def __init__(
        self,
        output: Path,
        *,
        max_artifact_bytes: int = MAX_ARTIFACT_BYTES,
        max_run_bytes: int = MAX_RUN_BYTES,
    ) -> None:
        self.folder = files_dir(output)
        self.max_artifact_bytes = max_artifact_bytes
        self.max_run_bytes = max_run_bytes
        self.written_bytes = 0

    def check(self, data: bytes, promised: str | None) -> str:
        """The MIME type of ``data``; ``ArtifactError`` if it breaks its promise or a bound."""
        if len(data) > self.max_artifact_bytes:
            raise ArtifactError(
                f"the answer's file is {len(data):,} bytes, over the bound of "
                f"{self.max_artifact_bytes:,} bytes per artifact"
            )
        found = sniff(data)
        if not same_kind(found, promised):
            raise ArtifactError(
                f"the answer promised {canonical(promised) or 'a file'} but its bytes are "
                f"{found or 'of no known type'} (starting {data[:8]!r})"
            )
        assert found is not None
        return found

    def save(self, data: bytes, promised: str | None) -> tuple[str, str]:
        """Write ``data`` (checked) unless it is there; its path relative to the output's folder
        and its MIME type."""
        mime = self.check(data, promised)
        name = f"{hashlib.sha256(data).hexdigest()}.{EXTENSIONS[mime]}"
        path = self.folder / name
        if not path.exists():
            if self.written_bytes + len(data) > self.max_run_bytes:
                raise ArtifactError(
                    f"this run's artifacts would pass {self.max_run_bytes:,} bytes in all; "
                    "rerun to continue with a fresh budget"
                )
            write_atomic(path, data)
            self.written_bytes += len(data)
        return f"{self.folder.name}/{name}", mime

    def has(self, relative: str) -> bool:
        """Whether a path an earlier answer recorded is still there."""
        return (self.folder.parent / relative).is_file()
