"""The artifact kinds' parts on their own: magic numbers, graders, prices, pending work, parsing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from batchrun.errors import RowError
from batchrun.formats.base import Reply
from batchrun.formats.rerank import RerankFormat
from batchrun.formats.speech import SpeechFormat
from batchrun.formats.transcription import TranscriptionFormat
from batchrun.formats.video import VideoFormat, VideosFormat
from batchrun.gateway.media import audio, mp4, png, spoken_text, wav
from batchrun.magic import same_kind, sniff
from batchrun.price_spec import Price
from batchrun.pricing import Units, cost_usd
from batchrun.ranking_scores import mrr, ndcg, word_error_rate
from batchrun.remote_work import TASK_KINDS, RemoteJob, RemoteRecord, record_path

REPLY = Reply(200, 0.1, None, None, None)


def test_sniff_knows_each_type_by_its_first_bytes() -> None:
    """Each file the gateway makes is recognised by its magic number, and text is not."""
    found = [sniff(png("a")), sniff(wav("a b")), sniff(mp4("t"))]
    found += [sniff(audio("a", f)[0]) for f in ("mp3", "opus", "flac", "aac")]
    assert found == [
        "image/png", "audio/wav", "video/mp4", "audio/mpeg", "audio/ogg", "audio/flac", "audio/aac",
    ]  # fmt: skip
    assert sniff(b'{"error": "no"}') is None and sniff(b"") is None


def test_same_kind_keeps_wildcards_and_refuses_other_types() -> None:
    """image/* accepts any image and no audio; an exact promise only its own type."""
    assert same_kind("image/webp", "image/*") and not same_kind("audio/wav", "image/*")
    assert same_kind("audio/mpeg", "audio/mp3") and not same_kind("audio/wav", "audio/mpeg")
    assert not same_kind(None, None)


def test_wer_normalises_case_and_punctuation_and_counts_edits() -> None:
    """WER: punctuation and case do not count; one substitution in four words is 0.25."""
    assert word_error_rate("Hello, World!", "hello world") == 0.0
    assert word_error_rate("the cat sat down", "the cat sat here") == 0.25
    assert word_error_rate("the cat", "the cat sat down") == 0.5  # two deletions
    assert word_error_rate("a b c d e", "a b") == 1.5  # insertions may pass 1.0
    assert word_error_rate("", "") is None


def test_ndcg_and_mrr_against_graded_relevance() -> None:
    """The ideal order scores 1; the worst order less, by the formula; MRR is 1/rank."""
    relevance = [2, 0, 1]
    assert ndcg([0, 2, 1], relevance) == pytest.approx(1.0)
    log3 = 1.5849625007211563  # gains 2**rel - 1 over log2(rank + 1)
    worst = (0 / 1 + 1 / log3 + 3 / 2) / (3 / 1 + 1 / log3 + 0 / 2)
    assert ndcg([1, 2, 0], relevance) == pytest.approx(worst)
    assert mrr([1, 2, 0], relevance) == pytest.approx(0.5)
    assert mrr([0, 1], "[0, 0, 3]") == 0.0  # the relevant one is not ranked
    assert ndcg([0], [0, 0]) is None and mrr([0], None) is None


def test_prices_by_the_piece() -> None:
    """per_image, per_second and per_1k_chars price their counts; an unknown count is null."""
    image = Price(per_image=0.04)
    assert cost_usd(image, None, None, None, Units(images=3)) == pytest.approx(0.12)
    assert cost_usd(image, None, None, None, Units()) is None
    speech = Price(per_1k_chars=15.0)
    assert cost_usd(speech, None, None, None, Units(chars=200)) == pytest.approx(3.0)
    mixed = Price(per_second=0.5, input=1_000_000.0, output=0.0)
    assert cost_usd(mixed, 2, 0, None, Units(seconds=4.0)) == pytest.approx(4.0)


def test_a_price_without_any_rate_is_refused() -> None:
    """An entry with neither tokens nor a per-piece rate names what to give."""
    with pytest.raises(ValidationError, match="give input and output"):
        Price()
    with pytest.raises(ValidationError, match="give output"):
        Price(input=1.0)


def test_pending_work_survives_a_new_reader_and_goes_when_empty(tmp_path: Path) -> None:
    """Entries are on disk when add returns; removing the last one removes the file."""
    output = tmp_path / "out.parquet"
    RemoteRecord(output).submitted(RemoteJob.new("video-task", "veo", ["k1"]), "t1")
    found = RemoteRecord(output).find("k1", TASK_KINDS)
    assert found is not None and found.remote_id == "t1"
    assert not list(tmp_path.glob(".*.tmp"))
    work = RemoteRecord(output)
    assert work.settle({"k1"}, TASK_KINDS) == 1 and not record_path(output).exists()


def test_pending_work_that_cannot_be_read_is_an_os_error(tmp_path: Path) -> None:
    """A damaged record is never silently taken for "nothing pending" (that would resubmit)."""
    output = tmp_path / "out.parquet"
    record_path(output).write_text("{not json")
    with pytest.raises(OSError, match="cannot read the pending work"):
        RemoteRecord(output)


def test_rerank_ranking_is_best_first_whatever_the_answer_order() -> None:
    """results come back in any order: ranking follows relevance_score, highest first."""
    payload = {
        "results": [
            {"index": 0, "relevance_score": 0.1},
            {"index": 2, "relevance_score": 0.9},
            {"index": 1, "relevance_score": 0.5},
        ],
        "usage": {"prompt_tokens": 12, "total_tokens": 12},
    }
    answer = RerankFormat().parse(payload, REPLY)
    assert answer is not None
    assert answer.ranking == [2, 1, 0] and answer.relevance_scores == [0.9, 0.5, 0.1]
    assert (answer.prompt_tokens, answer.completion_tokens) == (12, 0)


def test_speech_answer_is_the_audio_body_and_a_json_error_is_classified() -> None:
    """A 200 audio body is one blob of the header's type; a JSON error body raises."""
    data, mime = audio("hi there", "wav")
    answer = SpeechFormat().read(200, {"Content-Type": mime}, data, REPLY, [])
    assert answer.blobs is not None and answer.blobs[0].data == data
    assert answer.media_seconds == pytest.approx(0.1)
    body = json.dumps({"error": {"message": "bad voice", "code": "invalid_request"}}).encode()
    with pytest.raises(RowError):
        SpeechFormat().read(400, {"Content-Type": "application/json"}, body, REPLY, [])


def test_transcription_reads_json_and_plain_text() -> None:
    """``{"text"}`` and a text/plain body both land in response; seconds from usage."""
    fmt = TranscriptionFormat()
    body = json.dumps({"text": "hello", "usage": {"type": "duration", "seconds": 3}}).encode()
    answer = fmt.read(200, {"Content-Type": "application/json"}, body, REPLY, [])
    assert (answer.response, answer.media_seconds) == ("hello", 3.0)
    plain = fmt.read(200, {"Content-Type": "text/plain; charset=utf-8"}, b"hi\n", REPLY, [])
    assert plain.response == "hi"


def test_speech_wav_keeps_its_text_for_the_transcriber() -> None:
    """The gateway's WAV carries its words, so speech made there transcribes back."""
    assert spoken_text(wav("every endpoint")) == "every endpoint"


def test_video_states_of_both_apis() -> None:
    """new-api's and OpenAI's status shapes: running, done (with the URL), failed."""
    newapi, openai = VideoFormat(), VideosFormat()
    assert not newapi.state_of({"data": {"status": "in_progress"}}).done
    done = newapi.state_of(
        {"data": {"status": "succeeded", "url": "u", "metadata": {"duration": 4}}}
    )
    assert done.done and done.url == "u" and done.seconds == 4.0
    assert openai.state_of({"status": "completed", "seconds": "8"}).seconds == 8.0
    failed = openai.state_of({"status": "failed", "error": {"message": "moderation"}})
    assert not failed.done and failed.error is not None and "moderation" in failed.error
    assert openai.content_path("v1") == "videos/v1/content" and newapi.content_path("v") is None


class _FailingTasks:
    """A client whose task fails when polled."""

    async def exchange(self, api: str, method: str, path: str, body: Any = None) -> Any:
        from batchrun.transport import HttpResponse

        return HttpResponse(200, {}, json.dumps({"id": "v1", "status": "failed"}).encode())


def test_a_failed_video_task_fails_its_row_and_is_forgotten(tmp_path: Path) -> None:
    """The gateway says the task failed: a row error, and the record is dropped so that
    --retry-errors submits again."""
    from batchrun.artifacts import ArtifactStore
    from batchrun.video_tasks import VideoTasks

    output = tmp_path / "o.parquet"
    pending = RemoteRecord(output)
    pending.submitted(RemoteJob.new("videos-task", "sora-2", ["k"]), "v1")
    tasks = VideoTasks(_FailingTasks(), pending, ArtifactStore(output), secrets=[])
    request: Any = type("R", (), {"key": "k", "model": None, "body": b""})()
    with pytest.raises(RowError, match="the video task failed"):
        asyncio.run(tasks.complete(request, VideosFormat()))
    assert pending.find("k", TASK_KINDS) is None and tasks.submitted == 0
    assert not record_path(output).exists()


class _RunningTasks:
    """A client whose task is still running whenever it is polled."""

    async def exchange(self, api: str, method: str, path: str, body: Any = None) -> Any:
        from batchrun.transport import HttpResponse

        return HttpResponse(200, {}, json.dumps({"id": "v1", "status": "in_progress"}).encode())


def test_a_video_task_past_its_timeout_stays_recorded_for_the_next_run(tmp_path: Path) -> None:
    """A task still running at its timeout ends its row, but the row is not done: the task
    stays recorded and a later run collects it (it was a ``bad_request``, counted as done
    and dropped from the record, so its video was never collected)."""
    from batchrun.artifacts import ArtifactStore
    from batchrun.errors import TaskUnfinished
    from batchrun.media_sender import settle_tasks
    from batchrun.record import Result
    from batchrun.store import done_keys, results_frame
    from batchrun.video_tasks import VideoTasks

    async def no_wait(seconds: float) -> None:
        return None

    output = tmp_path / "o.parquet"
    record = RemoteRecord(output)
    record.submitted(RemoteJob.new("videos-task", "sora-2", ["k"]), "v1")
    tasks = VideoTasks(
        _RunningTasks(), record, ArtifactStore(output), secrets=[], sleep=no_wait, timeout_s=0.0
    )
    request: Any = type("R", (), {"key": "k", "model": None, "body": b""})()
    with pytest.raises(TaskUnfinished, match="stays recorded") as info:
        asyncio.run(tasks.complete(request, VideosFormat()))
    row = Result(
        prompt_id="p",
        model="sora-2",
        model_id="sora-2",
        sample=0,
        request_key="k",
        status="error",
        attempts=1,
        started_at=0.0,
        finished_at=1.0,
        error_type=info.value.error_type,
        error_message=info.value.message,
    )
    results_frame([row], "r", "j").write_parquet(output)
    assert "k" not in done_keys(output)
    settle_tasks(record, output)
    job = RemoteRecord(output).find("k", TASK_KINDS)
    assert job is not None and job.remote_id == "v1"
