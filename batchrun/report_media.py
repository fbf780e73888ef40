"""The report's artifacts side by side: per prompt, each model's images, audio and video.

``media_section`` promises one HTML section (empty text when no row names
an artifact): a table of prompts (rows) by models (columns) whose cells
show the row's files, images as a grid of thumbnails, audio as players,
video as a player showing its first frame, each with a link to the file.
A file up to ``INLINE_MAX_BYTES`` is inlined as a data URL, while the page's
inlined bytes stay under ``INLINE_TOTAL_BYTES``; beyond either it is linked
(relative to the report's folder when that is known), so the page stays
one self-contained file of bounded size. At most ``MAX_PROMPTS`` prompts
are shown.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

import polars as pl

from batchrun.dataset import PROMPT_ID
from batchrun.magic import canonical, sniff

INLINE_MAX_BYTES = 512 * 1024
INLINE_TOTAL_BYTES = 24 * 1024**2
MAX_PROMPTS = 200

CSS = """
.media td { vertical-align: top; }
.thumbs { display: grid; grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)); gap: 6px;
          min-width: 200px; }
.thumbs img { width: 100%; max-width: 160px; image-rendering: pixelated; border-radius: 4px;
              border: 1px solid var(--line); aspect-ratio: 1 / 1; object-fit: cover; }
.thumbs video { width: 100%; max-width: 200px; border-radius: 4px; background: #111827; }
.media audio { width: 220px; }
.media a { font-size: 11px; color: var(--muted); }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


class _Inliner:
    """Turns artifact paths into data URLs within the page's byte budget, else links."""

    def __init__(self, roots: list[Path], links_from: Path | None) -> None:
        self.roots = roots
        self.links_from = links_from
        self.inlined = 0

    def locate(self, relative: str) -> Path | None:
        for root in self.roots:
            path = root / relative
            if path.is_file():
                return path
        return None

    def source(self, relative: str) -> tuple[str, str, str]:
        """The URL to show a file by (data URL or link), the link to it, and its MIME type."""
        path = self.locate(relative)
        if path is None:
            return "", relative, ""
        link = (
            os.path.relpath(path.resolve(), self.links_from.resolve())
            if self.links_from is not None
            else path.resolve().as_uri()
        )
        size = path.stat().st_size
        if size > INLINE_MAX_BYTES or self.inlined + size > INLINE_TOTAL_BYTES:
            with path.open("rb") as handle:
                mime = sniff(handle.read(16)) or ""
            return link, link, mime
        data = path.read_bytes()
        self.inlined += size
        mime = sniff(data) or "application/octet-stream"
        return f"data:{mime};base64,{base64.b64encode(data).decode()}", link, mime


def _figure(inliner: _Inliner, relative: str, declared: str | None) -> str:
    url, link, mime = inliner.source(relative)
    if not url:
        return f'<span class="tag bad">missing</span> <a>{_e(relative)}</a>'
    kind = (mime or canonical(declared) or "").split("/")[0]
    name = _e(Path(relative).name[:12])
    if kind == "image":
        return f'<a href="{_e(link)}"><img src="{_e(url)}" alt="{name}" loading="lazy"></a>'
    if kind == "audio":
        return (
            f'<div><audio controls preload="none" src="{_e(url)}"></audio>'
            f'<br><a href="{_e(link)}">{name}</a></div>'
        )
    if kind == "video":
        return (
            f'<div><video controls preload="metadata" src="{_e(url)}"></video>'
            f'<br><a href="{_e(link)}">{name}</a></div>'
        )
    return f'<a href="{_e(link)}">{name}</a>'


def media_section(
    frame: pl.DataFrame,
    models: list[str],
    roots: list[Path],
    links_from: Path | None = None,
) -> str:
    """The artifacts of ``frame`` side by side (prompts by models); "" when there are none."""
    if "artifact_paths" not in frame.columns:
        return ""
    rows = frame.filter(pl.col("artifact_paths").list.len() > 0)
    if rows.height == 0:
        return ""
    wanted = [PROMPT_ID, "sample", "model", "artifact_paths", "artifact_type", "prompt"]
    cells: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for row in rows.select([c for c in wanted if c in rows.columns]).iter_rows(named=True):
        cells.setdefault((row[PROMPT_ID], row.get("sample") or 0), {})[row["model"]] = row
    inliner = _Inliner(roots, links_from)
    body = []
    for (prompt_id, sample), answers in sorted(cells.items())[:MAX_PROMPTS]:
        prompt = next((a.get("prompt") for a in answers.values() if a.get("prompt")), "") or ""
        tds = [
            f'<td class="prompt"><b>{_e(prompt_id)}{f" #{sample}" if sample else ""}</b>'
            f"<br>{_e(prompt)}</td>"
        ]
        for model in models:
            answer = answers.get(model)
            if answer is None:
                tds.append("<td>&ndash;</td>")
                continue
            figures = "".join(
                _figure(inliner, p, answer.get("artifact_type")) for p in answer["artifact_paths"]
            )
            tds.append(f'<td><div class="thumbs">{figures}</div></td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    head = "<th>prompt</th>" + "".join(f"<th>{_e(m)}</th>" for m in models)
    shown = min(len(cells), MAX_PROMPTS)
    return (
        f"<section><style>{CSS}</style><h2>Artifacts side by side</h2>"
        f"<p class='note'>The images, audio and video each model made for {shown:,} prompts "
        f"(of {len(cells):,}); files up to {INLINE_MAX_BYTES // 1024:,} KiB are inside this "
        f"page (up to {INLINE_TOTAL_BYTES // 1024**2} MiB in all), larger ones are linked."
        f"</p><table class='media' id='artifacts'><thead><tr>{head}</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></section>"
    )
