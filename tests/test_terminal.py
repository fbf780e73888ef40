"""Issue 18: batchrun at home in a terminal and in cron.

The bar test runs batchrun in a real pseudo-terminal; the log tests run it
with stderr to a pipe, as cron does.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from pathlib import Path

import polars as pl
from conftest import KEY_ENV, TEST_KEY, invoke, job_dict, write_job

from batchrun.gateway import GatewayThread

REPO = Path(__file__).resolve().parent.parent


def run_in_terminal(args: list[str], cwd: Path) -> str:
    """Run ``batchrun ARGS`` with stderr on a pseudo-terminal; everything it drew there."""
    leader, follower = pty.openpty()
    # A terminal of 120 columns, as a person's would be (a new pty has none).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "batchrun", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env={**os.environ, "COLUMNS": "120"},
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=60)
    os.close(leader)
    assert process.returncode == 0
    return b"".join(chunks).decode("utf-8", errors="replace")


def test_messages_never_share_a_line_with_the_bar(tmp_path: Path) -> None:
    """On a terminal the balance line and warnings print above the bar, never inside it."""
    shutil.copytree(REPO / "sample_data", tmp_path / "sample_data")
    job = yaml_with(REPO / "jobs" / "demo.yaml", {"mock": {"latency_ms": 30}})
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "demo.yaml").write_text(job)
    screen = run_in_terminal(["run", "jobs/demo.yaml"], tmp_path)
    segments = re.split(r"[\r\n]", screen)
    bars = [s for s in segments if "%|" in s]
    messages = [s for s in segments if "batchrun:" in s]
    assert bars, screen
    assert any("balance" in m for m in messages), screen
    for segment in segments:
        assert not ("%|" in segment and "batchrun:" in segment), segment
    assert any(s.lstrip().startswith("run:") for s in bars)  # the bar says what it counts


def yaml_with(path: Path, provider: dict[str, object]) -> str:
    """The job at ``path`` with its provider replaced."""
    import yaml

    data = yaml.safe_load(path.read_text())
    data["provider"] = provider
    return yaml.safe_dump(data, sort_keys=False)


def test_log_lines_carry_time_and_run_id(gateway: GatewayThread) -> None:
    """Off a terminal every line starts with an ISO 8601 UTC time and the run id."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    result = invoke("run", "job.yaml")
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (\d{8}T\d{6}Z-[0-9a-f]{6}) ")
    ids = {stamp.match(line).group(1) for line in lines}  # type: ignore[union-attr]
    assert len(ids) == 1
    assert any("started" in line for line in lines)
    assert any("exit 0 (done)" in line for line in lines)


def test_a_run_with_nothing_to_do_says_so_in_one_line(gateway: GatewayThread) -> None:
    """A no-op rerun prints one line, no progress and no table."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    assert invoke("run", "job.yaml").exit_code == 0
    again = invoke("run", "job.yaml")
    assert again.exit_code == 0
    lines = [line for line in again.stderr.splitlines() if "started" not in line]
    assert len(lines) == 1 and "nothing to send: 12 already done" in lines[0]
    assert "progress" not in again.stderr and again.stdout == ""


def test_summary_breaks_failures_down_by_type(start_gateway: Callable[..., GatewayThread]) -> None:
    """The end of a run with failures names each error type, its count and an example."""
    gw = start_gateway(model_scenarios={"model-b": "S26"})
    write_job(Path("job.yaml"), job_dict(gw.url))
    result = invoke("run", "job.yaml")
    assert result.exit_code == 1
    assert "6 x bad_request (e.g. b: HTTP 400" in result.stderr
    assert "exit 1 (6 of 12 rows failed)" in result.stderr
    summary = json.loads(invoke("run", "job.yaml", "--retry-errors", "--json").stdout)
    assert summary["errors"]["bad_request"]["count"] == 6
    assert summary["exit_code"] == 1 and summary["exit_reason"] == "6 of 12 rows failed"


def test_json_is_printed_when_the_run_is_refused(gateway: GatewayThread) -> None:
    """--json prints one JSON object with the exit code and the error, even for bad input."""
    job = job_dict(gateway.url)
    job["limits"]["rpm"] = "fast"
    write_job(Path("job.yaml"), job)
    result = invoke("run", "job.yaml", "--json")
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["exit_code"] == 2 and "limits.rpm" in payload["error"]


def test_json_is_printed_when_the_lock_is_lost(gateway: GatewayThread) -> None:
    """--json prints JSON when another run holds the output."""
    from batchrun.lock import RunLock

    write_job(Path("job.yaml"), job_dict(gateway.url))
    Path("out").mkdir()
    holder = RunLock(Path("out/results.parquet"))
    holder.acquire("someone-else")
    try:
        result = invoke("run", "job.yaml", "--json")
    finally:
        holder.release()
    assert result.exit_code == 2
    assert "being written by another batchrun run" in json.loads(result.stdout)["error"]


def test_summary_has_cost_scores_and_elapsed(gateway: GatewayThread) -> None:
    """Text and JSON summaries give the total cost, each score's mean and the elapsed time."""
    scores = [{"name": "correct", "grader": "numeric", "expected_column": "expected"}]
    prices = {"model-a": {"input": 1.0, "output": 2.0}, "b": {"input": 1.0, "output": 2.0}}
    write_job(Path("job.yaml"), job_dict(gateway.url, scores=scores, prices=prices))
    result = invoke("run", "job.yaml", "--json")
    summary = json.loads(result.stdout)
    frame = pl.read_parquet("out/results.parquet")
    assert summary["cost_usd"] > 0 and summary["elapsed_s"] > 0
    mean_a = frame.filter(pl.col("model") == "model-a")["score_correct"].mean()
    assert summary["scores"]["model-a"]["correct"]["mean"] == mean_a
    text = invoke("run", "job.yaml", "--fresh")
    assert "scores of model-a: correct" in text.stderr and "cost $" in text.stderr


def test_a_shard_counts_only_its_own_requests(gateway: GatewayThread) -> None:
    """`--shard 1/2` never counts the other shard's requests as already done."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    result = invoke("run", "job.yaml", "--shard", "1/2", "--json")
    summary = json.loads(result.stdout)
    assert summary["already_done"] == 0
    assert 0 < summary["sent"] < 12
    assert KEY_ENV and TEST_KEY  # the fixture's key is in the environment


def test_status_shows_the_output_per_model_and_sends_nothing(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """`batchrun status` counts done, failed by type, unsent and superseded; sends nothing."""
    gw = start_gateway(model_scenarios={"model-b": "S26"})
    job = job_dict(gw.url, prices={"model-a": {"input": 1.0, "output": 1.0}})
    write_job(Path("job.yaml"), job)
    assert invoke("run", "job.yaml").exit_code == 1
    sent = gw.gateway.stats.all_requests
    job["models"] = [{"id": "model-a", "params": {"temperature": 0.3}}, job["models"][1]]
    job["input"]["limit"] = 4
    write_job(Path("job.yaml"), job)
    result = invoke("status", "job.yaml", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    by_model = {m["model"]: m for m in payload["models"]}
    assert by_model["b"]["failed"] == {"bad_request": 6}
    assert by_model["model-a"]["unsent"] == 4  # its params changed: 4 prompts to send again
    assert payload["last_run"]["exit_code"] == 1
    assert payload["cost_usd"] > 0
    text = invoke("status", "job.yaml")
    assert "6 bad_request" in text.stdout and "last run" in text.stdout
    assert gw.gateway.stats.all_requests == sent


def test_merge_joins_the_shards_into_one_file(gateway: GatewayThread) -> None:
    """Two shards' outputs merge into the job's output path, one row per request."""
    write_job(Path("job.yaml"), job_dict(gateway.url))
    assert invoke("run", "job.yaml", "--shard", "0/2").exit_code == 0
    assert invoke("run", "job.yaml", "--shard", "1/2").exit_code == 0
    result = invoke("merge", "job.yaml")
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet("out/results.parquet")
    assert frame.height == 12 and frame["request_key"].n_unique() == 12
    assert "merged 2 shard files" in result.stdout
    # The merged file is complete: a plain run of the job sends nothing.
    before = gateway.gateway.stats.requests
    assert invoke("run", "job.yaml").exit_code == 0
    assert gateway.gateway.stats.requests == before


def test_model_check_suggests_a_command_that_works_when_pasted(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """The suggested `batchrun models` command, run as printed, lists the gateway's models."""
    import shlex

    gw = start_gateway(models=["model-a"])
    write_job(Path("job.yaml"), job_dict(gw.url))
    result = invoke("run", "job.yaml")
    assert result.exit_code == 2
    suggested = re.search(r"`(batchrun models [^`]+)`", result.stderr)
    assert suggested is not None, result.stderr
    listed = invoke(*shlex.split(suggested.group(1))[1:])
    assert listed.exit_code == 0 and "model-a" in listed.stdout


def test_a_refused_key_exits_3_in_every_command(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """`models`, `balance` and `run` all exit 3 for a key the gateway refuses; run sends nothing."""
    gw = start_gateway(keys=["sk-the-right-one"])
    write_job(Path("job.yaml"), job_dict(gw.url))
    assert invoke("models", "--job", "job.yaml").exit_code == 3
    assert invoke("models", "--base-url", gw.url, "--api-key-env", KEY_ENV).exit_code == 3
    result = invoke("run", "job.yaml")
    assert result.exit_code == 3
    assert "the gateway refused the run" in result.stderr
    assert gw.gateway.stats.requests == 0


def test_a_wrong_base_url_path_stops_before_sending(
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """A 404 on the model list (a typo in the path) is exit 2 with nothing sent."""
    gw = start_gateway(models_shape="missing")
    write_job(Path("job.yaml"), job_dict(gw.url))
    result = invoke("run", "job.yaml")
    assert result.exit_code == 2
    assert "provider.base_url" in result.stderr and "HTTP 404" in result.stderr
    assert gw.gateway.stats.requests == 0


def test_vision_stores_the_image_path_and_sends_the_image(tmp_path: Path) -> None:
    """A local image is inlined in the request but stored by its path, read beside the data."""
    from batchrun.prepare import prepare

    shutil.copytree(REPO / "sample_data", tmp_path / "sample_data")
    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    prepared = prepare(tmp_path / "jobs" / "vision.yaml", check_output=False)
    table = prepared.plan.table
    stored = table.rows(table.frame.get_column("prompt_id")).get_column("messages").to_list()
    assert all('"url":"images/' in text and "base64" not in text for text in stored)
    bodies = [request.body for request in prepared.plan.requests()]
    assert bodies and all(b"data:image/png;base64," in body for body in bodies)


def test_cron_runs_the_demo_from_another_folder_with_a_readable_log(tmp_path: Path) -> None:
    """Under cron's environment (env -i, no terminal, the home folder) the demo runs and its
    log tells the runs apart, what failed, what it cost and how each ended."""
    project = tmp_path / "project"
    shutil.copytree(REPO / "sample_data", project / "sample_data")
    shutil.copytree(REPO / "jobs", project / "jobs")
    home = tmp_path / "home"
    home.mkdir()
    log = home / "eval.log"
    for _ in range(2):
        with log.open("a") as out:
            code = subprocess.run(
                [sys.executable, "-m", "batchrun", "run", str(project / "jobs" / "demo.yaml")],
                cwd=home,
                env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                timeout=120,
            ).returncode
        assert code == 0
    text = log.read_text()
    assert (project / "results" / "demo.parquet").exists()
    assert not (home / "results").exists()
    stamped = [line for line in text.splitlines() if re.match(r"^\d{4}-\d\d-\d\dT", line)]
    ids = {line.split()[1] for line in stamped}
    assert len(ids) == 2  # two runs, told apart by their ids
    assert text.count("started: job demo") == 2
    assert "150 requests this run (0 failed)" in text
    assert "cost $" in text and "exit 0 (done)" in text
    assert "nothing to send: 150 already done" in text
    assert "Traceback" not in text


def test_mock_provider_takes_fault_rates() -> None:
    """`provider: mock` with `faults: {S13: 1.0}` answers every request with that fault."""
    job = job_dict("http://unused", provider={"mock": {"faults": {"S13": 1.0}}})
    job["limits"]["max_retries"] = 0
    write_job(Path("job.yaml"), job)
    result = invoke("run", "job.yaml")
    assert result.exit_code == 1
    frame = pl.read_parquet("out/results.parquet")
    assert set(frame["error_type"]) == {"server_error"}
    bad = job_dict("http://unused", provider={"mock": {"faults": {"S99": 0.5}}})
    write_job(Path("job.yaml"), bad)
    refused = invoke("run", "job.yaml")
    assert refused.exit_code == 2 and "unknown fault scenario 'S99'" in refused.stderr


def test_missing_keys_are_named_in_full(tmp_path: Path) -> None:
    """A job missing several keys names every one of them."""
    Path("job.yaml").write_text("name: x\nprovider: mock\n")
    result = invoke("validate", "job.yaml")
    assert result.exit_code == 2
    for key in ("input", "prompt", "models", "output"):
        assert key in result.stderr


def test_balance_reads_like_every_other_figure(start_gateway: Callable[..., GatewayThread]) -> None:
    """`batchrun balance` shows money with three significant digits: $87.5 of $100."""
    gw = start_gateway()
    result = invoke("balance", "--base-url", gw.url, "--api-key-env", KEY_ENV)
    assert result.exit_code == 0, result.output
    assert "balance: $87.5 left of $100 (used $12.5;" in result.stdout
