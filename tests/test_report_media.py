"""The report shows artifacts side by side: an image grid for jobs/images.yaml, in Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import polars as pl
from chromium import CHROMIUM_FLAGS, chromium_or_skip
from conftest import invoke
from pngread import pixel_counts

import batchrun.report_media as report_media

REPO = Path(__file__).resolve().parent.parent


def run_images() -> pl.DataFrame:
    shutil.copytree(REPO / "sample_data", "sample_data")
    shutil.copytree(REPO / "jobs", "jobs")
    assert invoke("run", "jobs/images.yaml", "--quiet").exit_code == 0
    return pl.read_parquet("results/images.parquet")


def colour_of(png: bytes) -> tuple[int, int, int]:
    """The one colour of a solid PNG the built-in gateway drew."""
    ((colour, _),) = pixel_counts(png).most_common(1)
    return colour


def test_report_shows_an_image_grid_for_the_images_job(tmp_path: Path) -> None:
    """Every image of jobs/images.yaml is inlined in the page, and Chromium draws each of them:
    the screenshot holds every image's colour over a thumbnail's area."""
    chromium = chromium_or_skip()
    frame = run_images()
    result = invoke("report", "results/images.parquet", "-o", "report.html")
    assert result.exit_code == 0
    page = Path("report.html").read_text()
    assert "Artifacts side by side" in page and page.count("data:image/png;base64,") == 12
    assert "http://" not in page and "https://" not in page
    paths = [Path("results") / p for ps in frame["artifact_paths"].to_list() for p in ps]
    colours = {colour_of(p.read_bytes()) for p in paths}
    shot = tmp_path / "images-report.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--hide-scrollbars",
            "--window-size=1200,1100",
            f"--screenshot={shot}",
            f"file://{Path('report.html').resolve()}",
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    drawn = pixel_counts(shot.read_bytes())
    missing = [c for c in colours if drawn[c] < 40 * 40]
    assert not missing, f"{len(missing)} of {len(colours)} images are not drawn"


def test_files_over_the_inline_bound_are_linked(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Beyond INLINE_MAX_BYTES a file is linked, relative to the report, not inlined."""
    run_images()
    monkeypatch.setattr(report_media, "INLINE_MAX_BYTES", 10)
    assert invoke("report", "results/images.parquet", "-o", "report.html").exit_code == 0
    page = Path("report.html").read_text()
    assert "data:image/png;base64," not in page
    assert 'src="results/images.files/' in page
