"""Rate limits and faults against the built-in gateway: prints the figures of issue 3.

    python benchmarks/limits.py

Every scenario runs `batchrun run` as a whole process against a gateway in
another process on 127.0.0.1. The gateway enforces its limits as a token
bucket (1 s of burst), the way hosted APIs meter requests per minute.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
from common import gateway_process, gateway_stats, run_batchrun, table, write_job

ROWS = 300  # x 2 models = 600 requests
LIMIT_PER_MODEL = 600  # requests per minute, so 1,200 a minute for the key


def limited_gateway() -> dict[str, object]:
    return {
        "model_rpm": {"model-a": LIMIT_PER_MODEL, "model-b": LIMIT_PER_MODEL},
        "rate_limit_burst_s": 1.0,
        "latency_ms": 20,
        "latency_sigma": 0.3,
    }


def rate_row(name: str, folder: Path, url: str, seconds: float) -> tuple[str, ...]:
    frame = pl.read_parquet(folder / "results.parquet")
    stats = gateway_stats(url)
    ok = frame.filter(pl.col("status") == "ok").height
    rate = ok / seconds * 60
    limit = 2 * LIMIT_PER_MODEL
    return (
        name,
        f"{ok}/{frame.height}",
        f"{seconds:.1f}",
        f"{rate:.0f}/min",
        f"{rate / limit:.1%}",
        str(stats["rate_limited"]),
        f"{stats['rate_limited'] / max(1, stats['requests']):.1%}",
        str(frame.filter(pl.col("status") != "ok").height),
    )


def main() -> None:
    rows: list[tuple[str, ...]] = [
        ("scenario", "ok", "wall s", "rate", "of limit", "429s", "429 share", "final failures")
    ]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        # 1. Declared: the job states the gateway's limit.
        with gateway_process(**limited_gateway()) as url:
            folder = base / "declared"
            models = [{"id": m, "rpm": LIMIT_PER_MODEL} for m in ("model-a", "model-b")]
            job = write_job(folder, url, ROWS, models=models)
            _, seconds, _ = run_batchrun(job)
            rows.append(rate_row("declared 600/min/model", folder, url, seconds))
        # 2. Undeclared: the same gateway, batchrun not told.
        with gateway_process(**limited_gateway()) as url:
            folder = base / "undeclared"
            job = write_job(folder, url, ROWS)
            _, seconds, _ = run_batchrun(job)
            rows.append(rate_row("undeclared (adaptive)", folder, url, seconds))
        print(table(rows))
        print()

        # 3. 5% of answers are 500s.
        faults = [("scenario", "exit", "rows ok", "final failures", "retries recorded", "sent")]
        with gateway_process(fault_rates={"S13": 0.05}, latency_ms=5) as url:
            folder = base / "five-percent-500"
            job = write_job(folder, url, ROWS, limits={"concurrency": 32, "backoff_base_s": 0.05})
            code, _, _ = run_batchrun(job)
            frame = pl.read_parquet(folder / "results.parquet")
            faults.append(
                (
                    "5% HTTP 500",
                    str(code),
                    str(frame.filter(pl.col("status") == "ok").height),
                    str(frame.filter(pl.col("status") != "ok").height),
                    str(int(frame["attempts"].sum()) - frame.height),
                    str(gateway_stats(url)["requests"]),
                )
            )
        # 4. A bad key.
        with gateway_process(keys=["sk-the-real-key"]) as url:
            folder = base / "bad-key"
            job = write_job(folder, url, ROWS)
            code, _, _ = run_batchrun(job, key="sk-wrong")
            faults.append(
                ("bad key (401)", str(code), "-", "-", "-", str(gateway_stats(url)["requests"]))
            )
        # 5. One model with no channel.
        with gateway_process(models=["model-a"], latency_ms=5) as url:
            folder = base / "no-channel"
            job = write_job(folder, url, ROWS)
            code, _, _ = run_batchrun(job, "--no-model-check")
            frame = pl.read_parquet(folder / "results.parquet")
            stats = gateway_stats(url)
            sent = {m: stats["by_model"].get(m, 0) for m in ("model-a", "model-b")}
            ok_a = frame.filter((pl.col("model") == "model-a") & (pl.col("status") == "ok")).height
            faults.append(
                (
                    "model-b has no channel",
                    str(code),
                    f"a: {ok_a}",
                    f"b: {frame.filter(pl.col('model') == 'model-b').height} unsent/failed",
                    "-",
                    f"a: {sent['model-a']}, b: {sent['model-b']}",
                )
            )
        print(table(faults))


if __name__ == "__main__":
    main()
