"""Rate limits in every dialect, and faults, against the built-in gateway: the figures of issue 16.

    python benchmarks/limits.py [--only declared|rates|litellm|faults]

Every scenario runs `batchrun run` as a whole process against a gateway
served from a thread of this process on 127.0.0.1, so the gateway's own log
of arrivals gives the figures: the rate it let through over each model's
busy time (first to last admitted request), the 429s it answered, and the
requests it saw in each second (the histogram; no second may carry more
than the pace plus the documented burst, `limits.burst`, 1 by default).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
from common import run_batchrun, table, write_job

from batchrun.gateway import GatewaySettings, GatewayThread
from batchrun.scope import HEADER_MARGIN

ROWS = 250  # per model
LIMIT = 600  # requests a minute per model
TPM = 23_000  # tokens a minute per model
BURST = 1  # limits.burst's default
Histograms = list[tuple[str, list[int]]]
# The LiteLLM deployment limit is run at each of these gateway latencies, started this far apart.
LITELLM_LATENCIES_MS = (10, 50, 300)
LITELLM_STAGGER_S = 6.0


def openai_gateway(**extra: Any) -> GatewaySettings:
    """OpenAI-style headers, 600 rpm per model over a 5 s sliding window."""
    settings: dict[str, Any] = {
        "model_rpm": {"model-a": LIMIT, "model-b": LIMIT},
        "rate_limit_window_s": 5.0,
        "ratelimit_dialect": "openai",
        "latency_ms": 20,
        "latency_sigma": 0.3,
    }
    return GatewaySettings(**{**settings, **extra})


def busy_rate(times: list[float]) -> float:
    """Requests a minute over the span from the first to the last."""
    if len(times) < 2 or times[-1] <= times[0]:
        return math.nan
    return (len(times) - 1) / (times[-1] - times[0]) * 60.0


def per_second(times: list[float]) -> list[int]:
    """Requests in each whole second from the first one."""
    if not times:
        return []
    counts = Counter(int(t - times[0]) for t in times)
    return [counts.get(i, 0) for i in range(max(counts) + 1)]


def run_job(
    gw: GatewayThread, folder: Path, rows: int, **job: Any
) -> tuple[int, pl.DataFrame, dict[str, Any]]:
    """Run one job against ``gw``; exit code, results and the --json summary."""
    path = write_job(folder, gw.url, rows, **job)
    code, _, summary = run_batchrun(path)
    return code, pl.read_parquet(folder / "results.parquet"), summary


def held(summary: dict[str, Any], model: str) -> str:
    """The summary's "held back by" and "of it used" for ``model``."""
    for row in summary.get("models", []):
        if row.get("model") == model:
            used = row.get("limit_used")
            share = f" {float(used):.0%}" if used is not None else ""
            return f"{row.get('held_by')}{share}"
    return "-"


def rate_row(
    name: str, gw: GatewayThread, frame: pl.DataFrame, summary: dict[str, Any], limit: float
) -> tuple[str, ...]:
    """One row of the rate table, per-model rates from the gateway's log."""
    limits = gw.gateway.limits
    stats = gw.gateway.stats
    models = sorted(limits.admitted)
    rates = [busy_rate(limits.admitted[m]) for m in models]
    worst = max(max(per_second(limits.arrivals[m])[1:-1] or [0]) for m in models)
    return (
        name,
        f"{frame.filter(pl.col('status') == 'ok').height}/{frame.height}",
        ", ".join(f"{r:.0f}" for r in rates) + "/min",
        ", ".join(f"{r / limit:.1%}" for r in rates),
        f"{stats.rate_limited} ({stats.rate_limited / max(1, stats.requests):.1%})",
        str(frame.filter(pl.col("status") != "ok").height),
        str(worst),
        held(summary, models[0]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=["declared", "rates", "litellm", "faults"],
        help="one part: the declared OpenAI scenario, every rate scenario, the LiteLLM and "
        "max-parallel rows, or the faults",
    )
    only = parser.parse_args().only
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        if only in (None, "declared", "rates"):
            print_rates(*rates(base, declared_only=only == "declared"))
            print()
        if only in (None, "litellm"):
            print(table(litellm_and_parallel(base)))
            print()
        if only in (None, "faults"):
            print(table(faults(base)))


def rates(base: Path, declared_only: bool = False) -> tuple[list[tuple[str, ...]], Histograms]:
    """The rate table's rows (OpenAI headers, tokens, pauses, two models) and histograms."""
    header = ("scenario", "ok", "rate/model", "of limit", "429s", "failed", "max/s", "held by")
    rows: list[tuple[str, ...]] = [header]
    histograms: Histograms = []
    declared = [{"id": m, "rpm": LIMIT} for m in ("model-a", "model-b")]
    with GatewayThread(openai_gateway()) as gw:
        _, frame, summary = run_job(gw, base / "oa-declared", ROWS, models=declared)
        rows.append(rate_row("openai 600/min/model, declared", gw, frame, summary, LIMIT))
        histograms.append(
            ("openai declared, model-a", per_second(gw.gateway.limits.arrivals["model-a"]))
        )
    if declared_only:
        return rows, histograms
    with GatewayThread(openai_gateway()) as gw:
        _, frame, summary = run_job(gw, base / "oa-undeclared", ROWS)
        rows.append(rate_row("openai 600/min/model, undeclared", gw, frame, summary, LIMIT))
    rows.append(tokens_row(base))
    # Pauses: 1% of answers are 429s asking for 1 s (scenario S12); the pace resumes after.
    with GatewayThread(openai_gateway(fault_rates={"S12": 0.01})) as gw:
        one = [{"id": "model-a", "rpm": LIMIT}]
        _, frame, summary = run_job(gw, base / "oa-pauses", 200, models=one)
        rows.append(rate_row("openai declared, 1% 429 (1 s)", gw, frame, summary, LIMIT))
        histograms.append(
            ("after pauses, model-a", per_second(gw.gateway.limits.arrivals["model-a"]))
        )
    # Two models, separate limits; model-b declares twice its limit.
    with GatewayThread(openai_gateway(ratelimit_dialect="oneapi", rate_limit_style="S12")) as gw:
        models = [{"id": "model-a", "rpm": LIMIT}, {"id": "model-b", "rpm": 2 * LIMIT}]
        _, frame, summary = run_job(gw, base / "two-models", 150, models=models)
        rows.append(rate_row("model-b over-driven 2x", gw, frame, summary, LIMIT))
    return rows, histograms


def print_rates(rows: list[tuple[str, ...]], histograms: Histograms) -> None:
    """The rate table, then each histogram against the pace and the burst."""
    print(table(rows))
    print()
    pace = f"pace {LIMIT / 60 * HEADER_MARGIN:.1f}/s + burst {BURST}"
    for name, counts in histograms:
        print(f"requests per second, {name} ({pace}):")
        print("  " + " ".join(str(c) for c in counts))


def tokens_row(base: Path) -> tuple[str, ...]:
    """23,000 tokens a minute per model, declared, OpenAI's token headers."""
    tokens = {"model_tpm": {"model-a": TPM, "model-b": TPM}, "model_rpm": {}}
    with GatewayThread(openai_gateway(**tokens)) as gw:
        models = [{"id": m, "tpm": TPM} for m in ("model-a", "model-b")]
        _, frame, summary = run_job(gw, base / "oa-tpm", ROWS, models=models)
        tpm = token_rates(gw, frame)
        return (
            "openai 23,000 tpm/model, declared",
            f"{frame.filter(pl.col('status') == 'ok').height}/{frame.height}",
            ", ".join(f"{t:,.0f}" for t in tpm) + " tok/min",
            ", ".join(f"{t / TPM:.1%}" for t in tpm),
            str(gw.gateway.stats.rate_limited),
            str(frame.filter(pl.col("status") != "ok").height),
            "-",
            held(summary, "model-a"),
        )


def token_rates(gw: GatewayThread, frame: pl.DataFrame) -> list[float]:
    """Tokens a minute each model was charged (prompt + max_tokens) over its busy time."""
    out = []
    for model in sorted(gw.gateway.limits.admitted):
        times = gw.gateway.limits.admitted[model]
        ok = frame.filter((pl.col("model") == model) & (pl.col("status") == "ok"))
        charged = float(ok["prompt_tokens"].sum()) + 16 * ok.height
        per_request = charged / max(1, ok.height)
        out.append(busy_rate(times) * per_request)
    return out


def litellm_and_parallel(base: Path) -> list[tuple[str, ...]]:
    """LiteLLM's deployment limit (only llm_provider-retry-after) and a max-parallel limit."""
    rows: list[tuple[str, ...]] = [("scenario", "exit", "ok", "429s", "sent", "seconds", "held by")]
    # Each run waits out one 60 s advice: the latencies run side by side, their starts
    # (where the 429s happen) a few seconds apart so they do not share the CPU then.
    with ThreadPoolExecutor(len(LITELLM_LATENCIES_MS)) as pool:
        runs = [
            pool.submit(litellm_run, base, latency, index * LITELLM_STAGGER_S)
            for index, latency in enumerate(LITELLM_LATENCIES_MS)
        ]
        rows.extend(run.result() for run in runs)
    settings = GatewaySettings(max_parallel=4, latency_ms=100)
    with GatewayThread(settings) as gw:
        job = {"models": ["model-a"], "limits": {"concurrency": 16}}
        code, frame, summary = run_job(gw, base / "parallel", 30, **job)
        row = outcome_row("max parallel 4, concurrency 16", gw, code, frame, summary)
        rows.append((*row[:5], f"{row[5]} (4 parallel: {30 / 4 * 0.1:.2f})", row[6]))
    return rows


def litellm_run(base: Path, latency_ms: float, delay_s: float) -> tuple[str, ...]:
    """20 rpm in fixed one-minute windows, 429s with only ``llm_provider-retry-after: 60``,
    30 requests at the default concurrency (32), answers taking ``latency_ms``."""
    time.sleep(delay_s)
    settings = GatewaySettings(
        model_rpm={"model-a": 20},
        ratelimit_dialect="litellm",
        latency_ms=latency_ms,
        latency_sigma=0.3,
    )
    with GatewayThread(settings) as gw:
        folder = base / f"litellm-{latency_ms:g}"
        code, frame, summary = run_job(gw, folder, 30, models=["model-a"])
        name = f"litellm 20 rpm, 30 requests, {latency_ms:g} ms"
        return outcome_row(name, gw, code, frame, summary)


def outcome_row(
    name: str, gw: GatewayThread, code: int, frame: pl.DataFrame, summary: dict[str, Any]
) -> tuple[str, ...]:
    """Exit, rows ok, 429s, requests sent and the seconds from first start to last finish."""
    span = (frame["finished_at"].max() - frame["started_at"].min()).total_seconds()  # type: ignore[operator]
    return (
        name,
        str(code),
        f"{frame.filter(pl.col('status') == 'ok').height}/{frame.height}",
        str(gw.gateway.stats.rate_limited),
        str(gw.gateway.stats.requests),
        f"{span:.2f}",
        held(summary, "model-a"),
    )


def faults(base: Path) -> list[tuple[str, ...]]:
    """5% HTTP 500s, a bad key, a model with no channel (issue 3's figures)."""
    rows: list[tuple[str, ...]] = [
        ("scenario", "exit", "rows ok", "final failures", "retries recorded", "sent")
    ]
    with GatewayThread(GatewaySettings(fault_rates={"S13": 0.05}, latency_ms=5)) as gw:
        job = {"limits": {"concurrency": 32, "backoff_base_s": 0.05}}
        code, frame, _ = run_job(gw, base / "five-percent-500", 300, **job)
        rows.append(
            (
                "5% HTTP 500",
                str(code),
                str(frame.filter(pl.col("status") == "ok").height),
                str(frame.filter(pl.col("status") != "ok").height),
                str(int(frame["attempts"].sum()) - frame.height),
                str(gw.gateway.stats.requests),
            )
        )
    with GatewayThread(GatewaySettings(keys=["sk-the-real-key"])) as gw:
        path = write_job(base / "bad-key", gw.url, 300)
        code, _, _ = run_batchrun(path, key="sk-wrong")
        rows.append(("bad key (401)", str(code), "-", "-", "-", str(gw.gateway.stats.requests)))
    with GatewayThread(GatewaySettings(models=["model-a"], latency_ms=5)) as gw:
        path = write_job(base / "no-channel", gw.url, 300)
        code, _, _ = run_batchrun(path, "--no-model-check")
        frame = pl.read_parquet(base / "no-channel" / "results.parquet")
        by_model = gw.gateway.stats.by_model
        ok_a = frame.filter((pl.col("model") == "model-a") & (pl.col("status") == "ok")).height
        rows.append(
            (
                "model-b has no channel",
                str(code),
                f"a: {ok_a}",
                f"b: {frame.filter(pl.col('model') == 'model-b').height} unsent/failed",
                "-",
                f"a: {by_model.get('model-a', 0)}, b: {by_model.get('model-b', 0)}",
            )
        )
    return rows


if __name__ == "__main__":
    main()
