"""Hostile or careless job files, end to end: exit 2, at most three lines, nothing sent.

Each case goes through ``batchrun validate`` and ``batchrun run`` against a
built-in gateway on a real socket; the gateway must see no request of any
kind (model list included) and no results or manifest may be left behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from conftest import KEY_ENV, TEST_KEY, invoke, job_dict, make_prompts, write_job

from batchrun.gateway import GatewayThread

Job = dict[str, Any]


def refused(gateway: GatewayThread, expected: str, *, within_s: float = 30.0) -> str:
    """Run validate and run on job.yaml; assert the refusal; return the error text."""
    text = ""
    for args in (["validate", "job.yaml"], ["run", "job.yaml"]):
        started = time.monotonic()
        result = invoke(*args)
        elapsed = time.monotonic() - started
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2, result.output[:2000]
        assert 1 <= len(lines) <= 3, result.stderr[:2000]
        assert "Traceback" not in result.output
        assert expected in result.stderr, result.stderr[:2000]
        assert elapsed < within_s, f"{args[0]} took {elapsed:.1f} s"
        text = result.stderr
    assert gateway.gateway.stats.all_requests == 0
    leftovers = [p for p in Path().rglob("*") if p.suffix == ".parquet" and p.parent.name == "out"]
    assert not leftovers and not list(Path().rglob("*.manifest.json"))
    return text


def write_text_job(gateway: GatewayThread, text: str) -> None:
    make_prompts(Path("prompts.parquet"))
    Path("job.yaml").write_text(text.replace("URL", gateway.url))


def break_job(gateway: GatewayThread, change: Callable[[Job], None]) -> None:
    make_prompts(Path("prompts.parquet"))
    job = job_dict(gateway.url)
    change(job)
    write_job(Path("job.yaml"), job)


def test_api_key_env_holding_the_key_is_not_quoted(gateway: GatewayThread) -> None:
    """The slip ``api_key_env: ${KEY}`` says what is wrong without the key's value."""
    break_job(gateway, lambda j: j["provider"].update(api_key_env="${" + KEY_ENV + "}"))
    text = refused(gateway, "api_key_env should name an environment variable, not hold the key")
    assert TEST_KEY not in text and TEST_KEY[3:] not in text


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("prompt.user", lambda j: j["prompt"].update(user="{{ question }} ${" + KEY_ENV + "}")),
        ("prompt.system", lambda j: j["prompt"].update(system="${" + KEY_ENV + ":-x}")),
        ("params.user", lambda j: j["params"].update(user="${" + KEY_ENV + "}")),
        ("name", lambda j: j.update(name="${" + KEY_ENV + "}")),
    ],
)
def test_env_variable_in_template_or_params_is_refused(
    gateway: GatewayThread, where: str, change: Callable[[Job], None]
) -> None:
    """``${VAR}`` outside provider and paths is an error naming the field, never filled in."""
    break_job(gateway, change)
    text = refused(gateway, f"{where}: ${{{KEY_ENV}}} is not filled in here")
    assert "job.yaml:" in text and TEST_KEY not in text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://gateway.example.com/v1", "plain http:// to gateway.example.com"),
        ("http://0x08080808/v1", "plain http:// to 0x08080808"),
        ("http://user:hunter2hunter2@127.0.0.1:9/v1", "the URL holds credentials"),
        ("ftp://127.0.0.1/v1", "is not an http(s) URL"),
    ],
)
def test_base_url_checks_are_case_insensitive_and_refuse_credentials(
    gateway: GatewayThread, url: str, expected: str
) -> None:
    """Upper-case schemes, numeric hosts and user:password@ are judged, in one line."""
    break_job(gateway, lambda j: j["provider"].update(base_url=url))
    text = refused(gateway, expected)
    assert "hunter2hunter2" not in text


@pytest.mark.parametrize(
    "headers",
    [{"X-Team": "red\r\nX-Injected: 1"}, {"X Bad Name": "v"}, {"X-Team": "a\x00b"}],
)
def test_header_with_line_break_is_refused(gateway: GatewayThread, headers: dict[str, str]) -> None:
    """A header that would smuggle another header (CR/LF) or is malformed is refused."""
    break_job(gateway, lambda j: j["provider"].update(headers=headers))
    text = refused(gateway, "has a malformed name or a line break or control character")
    assert "X-Injected" not in text


def test_numeric_loopback_host_is_loopback(gateway: GatewayThread) -> None:
    """``http://0x7f000001:PORT`` is this machine: no allow_insecure_http needed."""
    port = gateway.url.split(":")[-1].split("/")[0]
    make_prompts(Path("prompts.parquet"))
    job = job_dict(gateway.url)
    job["provider"]["base_url"] = f"http://0x7f000001:{port}/v1"
    write_job(Path("job.yaml"), job)
    result = invoke("validate", "job.yaml")
    assert result.exit_code == 0, result.stderr


def test_duplicate_key_is_refused_at_its_second_line(gateway: GatewayThread) -> None:
    """A second ``limits:`` is named with the line it is on."""
    make_prompts(Path("prompts.parquet"))
    text = yaml.safe_dump(job_dict(gateway.url), sort_keys=False) + "limits:\n  concurrency: 2\n"
    Path("job.yaml").write_text(text)
    line = text.count("\n") - 1
    refused(gateway, f"job.yaml:{line}: the key 'limits' is given twice")


ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
name: [*i]
"""


def test_alias_bomb_fails_fast(gateway: GatewayThread) -> None:
    """A YAML alias bomb is refused within a second, in one line."""
    write_text_job(gateway, ALIAS_BOMB)
    refused(gateway, "job.yaml:2: YAML aliases (*a) are not allowed", within_s=1.0)


def test_job_file_over_ten_megabytes_is_refused(gateway: GatewayThread) -> None:
    """A job file over 10 MB is refused before it is parsed."""
    write_text_job(gateway, "name: x\n# " + "x" * (10 * 1024**2) + "\n")
    refused(gateway, "job.yaml: the job file is over 10 MB")


def test_huge_bad_value_prints_a_short_excerpt(gateway: GatewayThread) -> None:
    """A 9 MB bad value is quoted as about 80 characters and its length."""
    make_prompts(Path("prompts.parquet"))
    job = job_dict(gateway.url, samples="z" * (9 * 1024**2))
    Path("job.yaml").write_text(yaml.safe_dump(job, sort_keys=False, width=10**9))
    text = refused(gateway, "samples: Input should be a valid integer")
    assert len(text) < 400 and "9,437,184 chars" in text


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"concurrency": 1e9}, "limits.concurrency: Input should be less than or equal to 10000"),
        ({"timeout_s": float("inf")}, "limits.timeout_s: Input should be"),
        ({"rpm": float("inf")}, "limits.rpm: Input should be"),
        ({"max_retry_time_s": 1e12}, "limits.max_retry_time_s: Input should be less than"),
        ({"max_prompt_chars": 0}, "limits.max_prompt_chars: Input should be greater than 0"),
    ],
)
def test_limits_are_bounded(gateway: GatewayThread, limits: Job, expected: str) -> None:
    """Every limit has a documented maximum and must be finite."""
    break_job(gateway, lambda j: j["limits"].update(limits))
    refused(gateway, expected)


def test_prompt_over_max_prompt_chars_names_the_row(gateway: GatewayThread) -> None:
    """A cell that makes a prompt of 300,000 characters is refused, naming its row."""
    frame = pl.DataFrame({"id": ["a", "big"], "question": ["short", "x" * 300_000]})
    frame.write_parquet("prompts.parquet")
    write_job(Path("job.yaml"), job_dict(gateway.url))
    refused(gateway, "row 'big': the rendered prompt is 300,009 characters")


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 3000000000 }}",
        "{{ ['x'] * 3000000000 }}",
        "{{ 7 ** (10 ** 9) }}",
        "{{ '%099999999d' % 1 }}",
        "{{ 'x' | center(3000000000) }}",
        "{% for i in range(10**9) %}x{% endfor %}",
        "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
    ],
)
def test_sandbox_refuses_costly_templates_quickly(gateway: GatewayThread, template: str) -> None:
    """Huge repetitions, powers, widths and loops are refused at once, naming the field."""
    break_job(gateway, lambda j: j["prompt"].update(user=template))
    refused(
        gateway, "prompt.user: row 'p000' cannot be rendered: refused by the sandbox", within_s=5
    )


def null_prompts(job: Job) -> None:
    pl.DataFrame(
        {"id": ["p0", "p1", "p2"], "question": ["one?", None, "three?"]},
        schema={"id": pl.String, "question": pl.String},
    ).write_parquet("nulls.parquet")
    job["input"] = {"path": "nulls.parquet", "id_column": "id"}


def test_null_cell_is_refused_naming_row_and_column(gateway: GatewayThread) -> None:
    """A null cell a template reads is refused by default, naming the row and the column."""
    break_job(gateway, null_prompts)
    refused(gateway, "input: row 'p1': column 'question' is empty; fill it, or set input.nulls")


@pytest.mark.parametrize(("nulls", "prompts"), [("skip", ["one?", "three?"]), ("empty", None)])
def test_null_cells_are_never_sent_as_none(
    gateway: GatewayThread, nulls: str, prompts: list[str] | None
) -> None:
    """With input.nulls: skip the row is left out; with empty it renders as empty text."""

    def setup(job: Job) -> None:
        null_prompts(job)
        job["input"]["nulls"] = nulls
        job["prompt"]["user"] = "Q: {{ question }}"
        job["models"] = ["model-a"]

    break_job(gateway, setup)
    result = invoke("run", "job.yaml")
    assert result.exit_code == 0, result.stderr
    sent = pl.read_parquet("out/results.parquet").sort("prompt_id").get_column("prompt").to_list()
    assert sent == (["Q: one?", "Q: three?"] if prompts else ["Q: one?", "Q: ", "Q: three?"])
    assert not any("None" in text for text in sent)


def test_empty_user_message_is_refused(gateway: GatewayThread) -> None:
    """A template that renders an empty user message is refused, naming the row."""
    break_job(gateway, lambda j: j["prompt"].update(user="{% if false %}x{% endif %}  "))
    refused(gateway, "prompt.user: row 'p000': the user message renders empty")


def test_mixed_schema_folder_is_refused_unless_union(gateway: GatewayThread) -> None:
    """A folder of files with different columns is refused, naming both; union: true allows it."""
    Path("data").mkdir()
    pl.DataFrame({"id": ["a"], "question": ["q1"]}).write_parquet("data/1.parquet")
    pl.DataFrame({"id": ["b"], "question": ["q2"], "extra": ["x"]}).write_parquet("data/2.parquet")
    break_job(gateway, lambda j: j.update(input={"path": "data", "id_column": "id"}))
    refused(gateway, "1.parquet and 2.parquet have different columns (extra)")
    job = job_dict(gateway.url, input={"path": "data", "id_column": "id", "union": True})
    write_job(Path("job.yaml"), job)
    assert invoke("validate", "job.yaml").exit_code == 0


def test_template_reading_no_column_runs(gateway: GatewayThread) -> None:
    """A Jinja template that reads no column renders for every row (no zip() crash)."""
    make_prompts(Path("prompts.parquet"))
    job = job_dict(gateway.url, prompt={"user": "{% if true %}hi{% endif %}"}, models=["model-a"])
    write_job(Path("job.yaml"), job)
    result = invoke("run", "job.yaml")
    assert result.exit_code == 0, result.output
    prompts = pl.read_parquet("out/results.parquet").get_column("prompt").to_list()
    assert prompts == ["hi"] * 6


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (" model-a", "has spaces around it"),
        ("model-a\n", "has spaces around it"),
        ("model\x07a", "holds control characters"),
        ("", "the model id is empty"),
    ],
)
def test_model_ids_are_checked_offline(gateway: GatewayThread, model: str, expected: str) -> None:
    """A model id with stray whitespace or control characters never reaches the gateway."""
    break_job(gateway, lambda j: j.update(models=[model]))
    assert "models[0].id: " in refused(gateway, expected)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"temperature": "0.2"}, "temperature should be a number from 0 to 2, not the string"),
        ({"top_p": 1.5}, "top_p should be a number from 0 to 1, not 1.5"),
        ({"max_tokens": 0}, "max_tokens should be an integer of at least 1"),
        ({"seed": 1.5}, "seed should be an integer"),
        ({"stream": "yes"}, "stream should be true or false"),
        ({"stop": [1]}, "stop should be a string or a list of strings"),
        ({"n": True}, "n should be an integer"),
    ],
)
def test_known_params_are_checked_by_type(
    gateway: GatewayThread, params: Job, expected: str
) -> None:
    """Parameters batchrun knows are checked by type and range, naming the parameter."""
    break_job(gateway, lambda j: j["params"].update(params))
    refused(gateway, f"params: {expected}")


def test_unknown_params_pass_through(gateway: GatewayThread) -> None:
    """A parameter batchrun does not know is sent as written."""
    make_prompts(Path("prompts.parquet"))
    job = job_dict(gateway.url, params={"temperature": 0.5, "reasoning_effort": "low"})
    write_job(Path("job.yaml"), job)
    assert invoke("validate", "job.yaml").exit_code == 0


@pytest.mark.parametrize(
    "url",
    ["HTTP://example.com/v1", "http://user:pw@example.com/v1", "http://0x08080808/v1"],
)
def test_models_and_balance_check_base_url_like_a_job(url: str) -> None:
    """`models` and `balance` with --base-url refuse what a job's base_url refuses."""
    for command in ("models", "balance"):
        result = invoke(command, "--base-url", url)
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert "--base-url" in result.stderr and "pw" not in result.stderr


def test_a_gateway_that_never_answers_is_not_sent_to_one_at_a_time() -> None:
    """With no model list and no answers, requests still go out in parallel and time out
    together: the run ends in a few timeouts, not one timeout per row (issue 15)."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = {"in_flight": 0, "most": 0}
    lock = threading.Lock()

    class Silent(BaseHTTPRequestHandler):
        def _hang(self) -> None:
            with lock:
                state["in_flight"] += 1
                state["most"] = max(state["most"], state["in_flight"])
            time.sleep(3)
            with lock:
                state["in_flight"] -= 1

        def do_GET(self) -> None:
            self._hang()

        def do_POST(self) -> None:
            self._hang()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Silent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        make_prompts(Path("prompts.parquet"), 8)
        limits = {"concurrency": 8, "timeout_s": 1, "max_retries": 0, "backoff_base_s": 0.001}
        write_job(Path("job.yaml"), job_dict(url, models=["model-a"], limits=limits))
        started = time.monotonic()
        result = invoke("run", "job.yaml", "--no-model-check")
        took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1
    assert state["most"] > 2  # more than the list request and one probe at a time
    assert took < 6, took  # one at a time would take 8 timeouts and more
