"""Every example job in jobs/ runs against the built-in gateway and writes the rows it promises."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from conftest import invoke

from batchrun.remote_work import record_path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.stem for p in (REPO / "jobs").glob("*.yaml") if p.stem != "eval")


def run_example(name: str, tmp_path: Path) -> pl.DataFrame:
    shutil.copytree(REPO / "sample_data", tmp_path / "sample_data")
    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    result = invoke("run", f"jobs/{name}.yaml", "--quiet")
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(f"results/{name}.parquet")
    assert frame.height > 0 and set(frame["status"]) == {"ok"}
    return frame


def test_every_example_is_tested() -> None:
    """Each example job has its own check below."""
    assert set(EXAMPLES) == set(CHECKS)


def check_demo(frame: pl.DataFrame) -> None:
    assert frame.height == 150 and frame["score_correct"].null_count() == 0
    assert frame["score_judged"].null_count() == 0 and frame["cost_usd"].null_count() == 0


def check_streaming(frame: pl.DataFrame) -> None:
    assert frame["ttft_s"].null_count() == 0 and frame["output_tokens_per_s"].null_count() == 0
    assert (frame["ttft_s"] >= 0.08).all()


def check_text_format(frame: pl.DataFrame) -> None:
    assert frame["response"].str.starts_with("The answer is").all()
    assert frame["prompt_tokens"].null_count() == 0 and frame["completion_tokens"].null_count() == 0


def check_embeddings(frame: pl.DataFrame) -> None:
    assert frame.schema["embedding"] == pl.List(pl.Float32)
    assert all(len(v) == 16 for v in frame["embedding"])
    assert frame["prompt_tokens"].null_count() == 0


def check_vision(frame: pl.DataFrame) -> None:
    assert frame["response"].str.contains("I see 1 image").all()
    # The request inlines the local image; the stored messages name it (issue 18).
    assert frame["messages"].str.contains('"url":"images/').all()
    assert not frame["messages"].str.contains("base64").any()


def check_tools(frame: pl.DataFrame) -> None:
    assert set(frame["finish_reason"]) == {"tool_calls"}
    calls = [json.loads(c) for c in frame["tool_calls"]]
    assert all(c[0]["function"]["name"] == "calculate" for c in calls)


def check_structured(frame: pl.DataFrame) -> None:
    assert frame["parsed_valid"].all()
    parsed = [json.loads(p) for p in frame["parsed"]]
    assert all(isinstance(p["value"], int) for p in parsed)


def check_reasoning(frame: pl.DataFrame) -> None:
    assert frame.filter(pl.col("model") == "mini-high")["reasoning"].null_count() == 0
    assert frame.filter(pl.col("model") == "mini-plain")["reasoning"].null_count() == 10
    assert frame.filter(pl.col("model") == "claude-sonnet-4-5")["reasoning_tokens"].min() > 0  # type: ignore[operator]


def check_batch(frame: pl.DataFrame) -> None:
    assert frame.height == 40 and set(frame["mode"]) == {"batch"}
    assert frame["batch_id"].n_unique() == 4  # batch_size 10: two batches a model
    assert frame["latency_s"].null_count() == 40 and frame["cost_usd"].null_count() == 0


def artifacts_of(frame: pl.DataFrame, kind: str) -> list[Path]:
    """Every file the rows name, each present and of ``kind`` (image, audio, video) by its bytes."""
    from batchrun.magic import sniff

    paths = [Path("results") / p for paths in frame["artifact_paths"] for p in paths]
    assert paths and all(p.is_file() for p in paths)
    assert all((sniff(p.read_bytes()) or "").startswith(kind + "/") for p in paths)
    assert all(t.startswith(kind + "/") for t in frame["artifact_type"])
    return paths


def check_images(frame: pl.DataFrame) -> None:
    assert frame.height == 12 and len(artifacts_of(frame, "image")) == 12
    assert frame["cost_usd"].null_count() == 0


def check_image_edits(frame: pl.DataFrame) -> None:
    paths = artifacts_of(frame, "image")
    assert len({p.name for p in paths}) == 2  # a different image uploaded, a different edit


def check_speech(frame: pl.DataFrame) -> None:
    artifacts_of(frame, "audio")
    assert set(frame["artifact_type"]) == {"audio/wav", "audio/mpeg"}
    assert frame["input_chars"].null_count() == 0 and frame["cost_usd"].null_count() == 0


def check_transcription(frame: pl.DataFrame) -> None:
    assert frame["response"].null_count() == 0 and frame["score_wer"].null_count() == 0
    whisper = frame.filter(pl.col("model") == "whisper-1")
    assert (whisper["response"] == whisper["transcript"]).all()
    assert frame["cost_usd"].null_count() == 0


def check_rerank(frame: pl.DataFrame) -> None:
    assert all(sorted(r) == [0, 1, 2] for r in frame["ranking"].to_list())
    assert all(s == sorted(s, reverse=True) for s in frame["relevance_scores"].to_list())
    assert frame["score_ndcg"].null_count() == 0 and frame["score_mrr"].null_count() == 0


def check_video(frame: pl.DataFrame) -> None:
    assert len(artifacts_of(frame, "video")) == 4
    assert not record_path(Path("results/video.parquet")).exists()


CHECKS = {
    "images": check_images,
    "image-edits": check_image_edits,
    "speech": check_speech,
    "transcription": check_transcription,
    "rerank": check_rerank,
    "video": check_video,
    "batch": check_batch,
    "demo": check_demo,
    "streaming": check_streaming,
    "responses": check_text_format,
    "claude-messages": check_text_format,
    "gemini": check_text_format,
    "embeddings": check_embeddings,
    "vision": check_vision,
    "tools": check_tools,
    "structured": check_structured,
    "reasoning": check_reasoning,
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_job(name: str, tmp_path: Path) -> None:
    """The example runs as shipped and its rows carry what it demonstrates."""
    CHECKS[name](run_example(name, tmp_path))
    if name in MEDIA_EXAMPLES:  # a rerun sends nothing: every row is done
        again = invoke("run", f"jobs/{name}.yaml", "--quiet", "--json")
        assert again.exit_code == 0 and json.loads(again.stdout)["sent"] == 0


MEDIA_EXAMPLES = {"images", "image-edits", "speech", "transcription", "rerank", "video"}


@pytest.mark.parametrize(
    ("api", "path", "header"),
    [
        ("messages", "/v1/messages", "anthropic-version"),
        ("gemini", "/v1beta/models/model-a:generateContent", "x-goog-api-key"),
        ("responses", "/v1/responses", "authorization"),
        ("embeddings", "/v1/embeddings", "authorization"),
    ],
)
def test_formats_on_the_wire(start_gateway, api: str, path: str, header: str) -> None:  # type: ignore[no-untyped-def]
    """Each format goes to its own path with the headers it needs."""
    from conftest import job_dict, make_prompts, write_job

    gw = start_gateway()
    make_prompts(Path("prompts.parquet"), 2)
    write_job(Path("job.yaml"), job_dict(gw.url, models=["model-a"], api=api))
    assert invoke("run", "job.yaml").exit_code == 0
    assert gw.gateway.stats.by_path[path] == 2
    assert gw.gateway.stats.header_names[header] == 2
