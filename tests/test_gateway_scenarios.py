"""The gateway's scenario table, its help text, and the --fault / latency parsers."""

from __future__ import annotations

import re

import pytest

from batchrun.gateway import SCENARIOS, parse_fault, parse_latency, scenario_help
from batchrun.gateway.faults import FAULTS, describe_faults
from batchrun.gateway.refusals import REFUSALS
from batchrun.gateway.streaming import _FINISH  # the stream's finish reasons per scenario


def test_table_covers_every_section_8_fault() -> None:
    """S05 to S26 of GATEWAYS.md section 8 each have a row with a name and meaning."""
    for number in range(5, 27):
        code = f"S{number:02d}"
        assert code in SCENARIOS, code
        row = SCENARIOS[code]
        assert row.name and row.meaning and row.produced


def test_every_refusal_builder_has_a_row() -> None:
    """Each refusal the gateway can build is described in the table, and nothing else is."""
    assert set(FAULTS) == set(REFUSALS)
    assert {code for code, s in SCENARIOS.items() if s.how == "replace"} == set(REFUSALS)
    assert set(_FINISH) <= set(SCENARIOS)


def test_help_lists_every_scenario_with_name_and_meaning() -> None:
    """scenario_help names each scenario by code, name and meaning."""
    text = scenario_help()
    for code, row in SCENARIOS.items():
        assert re.search(rf"^  {re.escape(code)} {re.escape(row.name)} +", text, re.M), code
        assert row.meaning in text


def test_help_states_the_key_rule() -> None:
    """The help says a missing key gets 401, not that any key at all is accepted."""
    text = scenario_help()
    assert "No key at all is refused with 401" in text
    assert "any non-empty key is accepted" in text


def test_describe_faults_is_the_non_streamed_set() -> None:
    """describe_faults keeps listing refusals and bent answers, not stream-only scenarios."""
    names = describe_faults()
    assert "S07" in names and "S05" in names and "S24c" in names
    assert "S20" not in names and "S02b" not in names


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("S13=0.05", ("S13", 0.05)), (" S10b = 1 ", ("S10b", 1.0)), ("S20=0", ("S20", 0.0))],
)
def test_parse_fault_reads_code_and_rate(spec: str, expected: tuple[str, float]) -> None:
    """CODE=RATE specs give the scenario and its rate."""
    assert parse_fault(spec) == expected


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("S13", "expected CODE=RATE"),
        ("S99=0.1", "unknown scenario 'S99'"),
        ("S13=often", "'often' is not a number"),
        ("S13=1.5", "between 0 and 1"),
    ],
)
def test_parse_fault_rejects_bad_specs(spec: str, says: str) -> None:
    """A bad spec is a ValueError saying what is wrong."""
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_fault(spec)


def test_parse_latency() -> None:
    """200 is every model's latency; model-a=350 one model's; bad values are refused."""
    assert parse_latency("200") == (None, 200.0)
    assert parse_latency("model-a=350") == ("model-a", 350.0)
    for bad in ("-5", "fast", "=10", "nan"):
        with pytest.raises(ValueError, match="latency"):
            parse_latency(bad)


def test_gateway_command_serves_faults_and_latency_as_asked() -> None:
    """`batchrun gateway --fault S13=1 --latency-ms 50` answers every request with S13, late."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "batchrun", "gateway", "--port", str(port)),
            *("--fault", "S13=1", "--latency-ms", "50"),
        ],
        stderr=subprocess.DEVNULL,
        env=os.environ,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = b'{"model": "model-a", "messages": [{"role": "user", "content": "hi"}]}'
        deadline = time.monotonic() + 20
        while True:
            request = urllib.request.Request(
                url, data=body, headers={"Authorization": "Bearer sk-x"}
            )
            started = time.monotonic()
            try:
                urllib.request.urlopen(request, timeout=5)
            except urllib.error.HTTPError as exc:
                with exc:
                    assert exc.code == 500
                    assert b"do_request_failed" in exc.read()
                assert time.monotonic() - started >= 0.05
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)
                continue
            raise AssertionError("a healthy answer despite --fault S13=1")
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_gateway_command_refuses_a_bad_fault_in_one_line() -> None:
    """An unknown scenario is one line and exit 2."""
    from conftest import invoke

    result = invoke("gateway", "--fault", "S99=0.5")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "S99" in result.stderr
