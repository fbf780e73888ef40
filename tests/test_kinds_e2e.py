"""The artifact kinds over a real socket: typed files, video tasks across runs, bad input."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from conftest import KEY_ENV, invoke, spawn_run

from batchrun.gateway import GatewayThread
from batchrun.magic import sniff
from batchrun.remote_work import record_path

REPO = Path(__file__).resolve().parent.parent
VIDEO_PATHS = ("/v1/video/generations", "/v1/videos")
RECORD = record_path(Path("results/video.parquet"))


def example(name: str, base_url: str, **changes: Any) -> Path:
    """The example job ``name`` pointed at the gateway at ``base_url``, with ``changes``."""
    shutil.copytree(REPO / "sample_data", "sample_data", dirs_exist_ok=True)
    job = yaml.safe_load((REPO / "jobs" / f"{name}.yaml").read_text())
    job["provider"] = {"base_url": base_url, "api_key_env": KEY_ENV}
    job.update(changes)
    path = Path("jobs") / f"{name}.yaml"  # its paths are the job file's folder's
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def video_requests(gw: GatewayThread) -> int:
    """Every request about videos: submissions, polls, downloads."""
    paths = gw.gateway.stats.by_path
    return sum(n for p, n in paths.items() if p.startswith(("/v1/video", "/sim-files")))


def submissions(gw: GatewayThread) -> int:
    return sum(gw.gateway.stats.by_path[p] for p in VIDEO_PATHS)


@pytest.mark.parametrize("name", ["images", "image-edits", "speech", "video"])
def test_artifacts_are_content_addressed_and_a_rerun_sends_nothing(
    start_gateway: Callable[..., GatewayThread], name: str
) -> None:
    """Each kind's files sit in NAME.files/<sha256>.<ext>, of the promised type; a rerun sends
    no request at all (no generation, no poll, no download)."""
    import hashlib

    gw = start_gateway(video_ms=50)
    job = example(name, gw.url)
    assert invoke("run", str(job), "--quiet").exit_code == 0
    frame = pl.read_parquet(f"results/{name}.parquet")
    assert set(frame["status"]) == {"ok"}
    named = [p for paths in frame["artifact_paths"].to_list() for p in paths]
    assert len(named) == frame.height
    for relative in named:
        path = Path("results") / relative
        digest, ext = path.stem, path.suffix
        assert path.parent.name == f"{name}.files"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        assert ext[1:] in {"png", "wav", "mp3", "mp4"} and sniff(path.read_bytes()) is not None
    before = gw.gateway.stats.all_requests
    again = invoke("run", str(job), "--quiet", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["sent"] == 0
    assert gw.gateway.stats.all_requests - before <= 1  # the model list only


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_video_stopped_by_sigterm_while_pending_is_collected_without_resubmitting(
    start_gateway: Callable[..., GatewayThread], signum: int, code: int
) -> None:
    """SIGTERM (or kill -9) while every task runs: the task ids stay recorded; the next run
    polls and fetches them and submits nothing."""
    gw = start_gateway(video_ms=600_000)
    job = example("video", gw.url)
    recorded = stop_while_pending(gw, job, signum, code)
    assert len(recorded) == 4 and submissions(gw) == 4
    assert {w["kind"] for w in recorded} == {"video-task", "videos-task"}
    assert all(len(w["keys"]) == 1 and w["status"] == "submitted" for w in recorded)
    shown = invoke("status", str(job))  # sends nothing: the tasks are still running
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.count("pending video task ") == 4
    assert all(
        f"pending video task {w['remote_id']} ({w['model']}" in shown.stdout for w in recorded
    )
    listed = json.loads(invoke("status", str(job), "--json").stdout)["pending_tasks"]
    assert {t["task_id"] for t in listed} == {w["remote_id"] for w in recorded}
    assert submissions(gw) == 4
    gw.gateway.settings.video_ms = 0  # the tasks are done now
    result = invoke("run", str(job), "--quiet")
    assert result.exit_code == 0, result.output
    assert submissions(gw) == 4  # nothing submitted twice
    frame = pl.read_parquet("results/video.parquet")
    assert frame.height == 4 and set(frame["status"]) == {"ok"}
    assert set(frame["response_id"]) == {w["remote_id"] for w in recorded}
    assert not RECORD.exists()


def stop_while_pending(
    gw: GatewayThread, job: Path, signum: int, code: int
) -> list[dict[str, Any]]:
    """Run ``job`` in a process, stop it with ``signum`` once its 4 tasks are submitted and
    recorded; the recorded jobs."""
    process = spawn_run(str(job), "--quiet", "--grace", "0.5")
    deadline = time.monotonic() + 30
    while submissions(gw) < 4 or not RECORD.exists():
        assert time.monotonic() < deadline, "the tasks were not submitted"
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == code, err
    return list(json.loads(RECORD.read_text())["jobs"])


def test_video_tasks_recorded_by_the_old_pending_file_are_collected_without_resubmitting(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """Tasks pending in an old-format NAME.pending.json (by request key, under "entries"):
    the next run collects them, submits nothing, and leaves neither record behind."""
    gw = start_gateway(video_ms=600_000)
    job = example("video", gw.url)
    recorded = stop_while_pending(gw, job, signal.SIGKILL, -9)
    legacy = Path("results/video.pending.json")
    entries = {
        w["keys"][0]: {
            "task_id": w["remote_id"],
            "api": w["kind"].removesuffix("-task"),
            "model": w["model"],
            "at": w["submitted_at"],
        }
        for w in recorded
    }
    legacy.write_text(json.dumps({"entries": entries}, indent=1, sort_keys=True))
    RECORD.unlink()
    gw.gateway.settings.video_ms = 0
    result = invoke("run", str(job), "--quiet")
    assert result.exit_code == 0, result.output
    assert submissions(gw) == 4  # nothing submitted twice
    frame = pl.read_parquet("results/video.parquet")
    assert frame.height == 4 and set(frame["status"]) == {"ok"}
    assert set(frame["response_id"]) == {entry["task_id"] for entry in entries.values()}
    assert not legacy.exists() and not RECORD.exists()


def test_a_video_fetched_before_a_crash_is_not_fetched_again(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """A pending entry naming its written file: the next run collects it with no request."""
    gw = start_gateway(video_ms=0)
    job = example("video", gw.url)
    assert invoke("run", str(job), "--quiet").exit_code == 0
    frame = pl.read_parquet("results/video.parquet")
    # As if killed after the fetch, before the rows were written: entries, no rows.
    entries = {
        row["request_key"]: {
            "task_id": row["response_id"],
            "api": "video" if row["model"] == "veo-3" else "videos",
            "artifact": row["artifact_paths"][0],
            "type": "video/mp4",
            "seconds": 4.0,
        }
        for row in frame.iter_rows(named=True)
    }
    Path("results/video.pending.json").write_text(json.dumps({"entries": entries}))
    Path("results/video.parquet").unlink()
    before = video_requests(gw)
    assert invoke("run", str(job), "--quiet").exit_code == 0
    assert video_requests(gw) == before  # no submission, no poll, no download
    assert set(pl.read_parquet("results/video.parquet")["status"]) == {"ok"}


@pytest.mark.parametrize("name", ["images", "speech", "video"])
def test_an_answer_not_of_its_promised_type_is_a_bad_artifact_row(
    start_gateway: Callable[..., GatewayThread], name: str
) -> None:
    """Bytes whose magic number is not the promised type: each row fails as bad_artifact, never
    retried, and no file is written."""
    gw = start_gateway(wrong_media=True, video_ms=0)
    job = example(name, gw.url)
    result = invoke("run", str(job), "--quiet")
    assert result.exit_code == 1, result.output
    frame = pl.read_parquet(f"results/{name}.parquet")
    assert set(frame["error_type"]) == {"bad_artifact"} and set(frame["attempts"]) == {1}
    assert "promised" in frame["error_message"][0]
    assert not list(Path("results").glob(f"{name}.files/*"))


def test_a_url_over_the_size_bound_fails_its_row(
    start_gateway: Callable[..., GatewayThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image answered by URL is fetched only up to the per-artifact bound."""
    import batchrun.media_sender as media_sender
    from batchrun.artifacts import ArtifactStore

    monkeypatch.setattr(
        media_sender, "ArtifactStore", lambda output: ArtifactStore(output, max_artifact_bytes=20)
    )
    gw = start_gateway()
    job = example("images", gw.url)
    result = invoke("run", str(job), "--quiet")
    assert result.exit_code == 1
    frame = pl.read_parquet("results/images.parquet")
    assert set(frame["error_type"]) == {"bad_artifact"}
    assert frame["error_message"].str.contains("over the bound of 20 bytes").all()


def write_bad_audio(tmp: Path, cell: str) -> Path:
    pl.DataFrame({"id": ["a"], "audio": [cell], "transcript": ["x"]}).write_csv("bad.csv")
    return example(
        "transcription", "http://127.0.0.1:9/v1", input={"path": "../bad.csv", "id_column": "id"}
    )


@pytest.mark.parametrize(
    ("cell", "says"),
    [
        ("missing.wav", "cannot read missing.wav"),
        ("notes.txt", "is not a .wav/.mp3"),
        ("fake.wav", "its bytes are image/png"),
    ],
)
def test_bad_audio_input_is_one_clear_line(tmp_path: Path, cell: str, says: str) -> None:
    """A missing, unsupported or mislabelled audio file: one line naming the field and row,
    exit 2, nothing sent."""
    from batchrun.gateway.media import png

    Path("fake.wav").write_bytes(png("x"))
    Path("notes.txt").write_text("hello")
    job = write_bad_audio(tmp_path, cell)
    result = invoke("validate", str(job))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "prompt.audio_column" in lines[0] and "row 'a'" in lines[0]
    assert says in lines[0] and "Traceback" not in result.output


def test_rerank_without_documents_is_one_clear_line() -> None:
    """api: rerank with no documents_column: one line naming the field, exit 2."""
    job = example("rerank", "http://127.0.0.1:9/v1", prompt={"user": "{{ query }}"})
    result = invoke("validate", str(job))
    assert result.exit_code == 2
    assert "prompt.documents_column" in result.stderr and len(result.stderr.splitlines()) == 1


def test_compare_scores_transcription_by_wer_and_rerank_by_ndcg(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """batchrun compare shows the wer score per model (the garbling model higher) and ndcg."""
    gw = start_gateway(accuracy={"gpt-4o-transcribe": 0.6})
    for name in ("transcription", "rerank"):
        assert invoke("run", str(example(name, gw.url)), "--quiet").exit_code == 0
    shown = invoke("compare", "results/transcription.parquet", "--format", "json")
    assert shown.exit_code == 0, shown.output
    models = {m["model"]: m for m in json.loads(shown.stdout)["models"]}
    assert models["whisper-1"]["score_wer"]["mean"] == 0.0
    assert models["gpt-4o-transcribe"]["score_wer"]["mean"] > 0.1
    # WER is better when lower: the model that garbles loses the pairwise count.
    pair = next(r for r in json.loads(shown.stdout)["pairwise"] if r["score"] == "wer")
    assert (pair["model_a"], pair["model_b"]) == ("gpt-4o-transcribe", "whisper-1")
    assert pair["test"]["losses"] > pair["test"]["wins"] == 0
    ranked = invoke("compare", "results/rerank.parquet")
    assert ranked.exit_code == 0 and "ndcg" in ranked.stdout and "mrr" in ranked.stdout


def test_an_image_file_whose_bytes_are_not_its_suffix_is_one_clear_line() -> None:
    """An edit's image named .png holding WAV bytes: one line naming the row, exit 2."""
    from batchrun.gateway.media import wav

    Path("fake.png").write_bytes(wav("not an image"))
    pl.DataFrame({"id": ["r"], "image": ["fake.png"]}).write_csv("bad.csv")
    bad = {"path": "../bad.csv", "id_column": "id"}
    job = example("image-edits", "http://127.0.0.1:9/v1", input=bad)
    result = invoke("validate", str(job))
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "prompt.image_column" in line and "row 'r'" in line and "audio/wav" in line


def test_a_speech_format_that_cannot_be_checked_is_refused_at_validation() -> None:
    """response_format pcm has no magic number to check: one line, exit 2, nothing sent."""
    pcm = [{"id": "tts-1", "params": {"response_format": "pcm"}}]
    job = example("speech", "http://127.0.0.1:9/v1", models=pcm)
    result = invoke("validate", str(job))
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "models[0].params: tts-1: response_format 'pcm'" in result.stderr


def test_validate_estimates_prices_by_the_piece() -> None:
    """Images by n, video by the seconds asked: a bounded estimate; no max_tokens advice for
    formats whose answer is not tokens."""
    shutil.copytree(REPO / "sample_data", "sample_data")
    shutil.copytree(REPO / "jobs", "jobs")
    result = invoke("validate", "jobs/video.yaml")
    assert result.exit_code == 0, result.output
    assert "estimated cost: $2.0000 (input only) to $2.0000" in result.stdout
    assert "not capped" not in result.stdout
    images = invoke("validate", "jobs/images.yaml")
    assert "$0.2440 (input only) to $0.2440" in images.stdout


def test_translation_uploads_to_its_own_path(start_gateway: Callable[..., GatewayThread]) -> None:
    """api: translation sends the same multipart upload to /v1/audio/translations."""
    gw = start_gateway()
    job = example("transcription", gw.url, api="translation", scores=[])
    assert invoke("run", str(job), "--quiet").exit_code == 0
    frame = pl.read_parquet("results/transcription.parquet")
    assert set(frame["status"]) == {"ok"} and frame["response"].null_count() == 0
    assert gw.gateway.stats.by_path["/v1/audio/translations"] == frame.height
    assert gw.gateway.stats.by_path["/v1/audio/transcriptions"] == 0
