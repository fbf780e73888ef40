"""The scenario table: every fault the built-in gateway can reproduce, in one place.

Each ``Scenario`` has the code of ../shared/GATEWAYS.md section 8 (``S13``;
variants ``S13b``...; ``E4xx`` for other statuses worth reproducing), a short
name, a one-line meaning and how the gateway produces it: it *replaces* the
answer (a refusal built by ``refusals.py``), *bends* a healthy non-streamed
answer, or *bends a stream*. A request gets a scenario from the
``X-Sim-Scenario`` header, from ``model_scenarios`` or at random from
``fault_rates``. ``scenario_help`` renders the table for ``--help``;
``parse_fault`` reads ``S13=0.05`` specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from batchrun.gateway.refusals import REFUSALS, FaultBuilder

SCENARIO_HEADER = "X-Sim-Scenario"

How = Literal["replace", "answer", "stream", "answer+stream"]
_HOW_TEXT = {
    "replace": "replaces the answer",
    "answer": "bends a non-streamed answer",
    "stream": "bends a streamed answer",
    "answer+stream": "bends the answer, streamed or not",
}

KEY_RULE = (
    "Keys: send one as 'Authorization: Bearer KEY' (or x-api-key / x-goog-api-key); "
    "'Bearer ' and 'sk-' are optional. No key at all is refused with 401 (S07). "
    "Without a key list any non-empty key is accepted; with one, only the listed keys."
)


@dataclass(frozen=True)
class Scenario:
    """One reproducible gateway behaviour."""

    code: str
    name: str
    meaning: str
    how: How
    build: FaultBuilder | None = None  # set when the scenario replaces the answer
    slow: bool = False  # the gateway waits ``stall_s`` first (and only when not streamed)

    @property
    def produced(self) -> str:
        """How the gateway produces it, in words."""
        text = _HOW_TEXT[self.how]
        return f"{text} after a stall, non-streamed only" if self.slow else text


def _r(code: str, name: str, meaning: str) -> Scenario:
    return Scenario(code, name, meaning, "replace", REFUSALS[code])


_TABLE = (
    Scenario("S02b", "data-no-space", "SSE lines 'data:' without the space", "stream"),
    Scenario("S03", "ping-comments", "': PING' comments and a usage chunk always sent", "stream"),
    Scenario("S04", "usage-unasked", "usage chunk sent though include_usage was not", "stream"),
    Scenario("S05", "no-usage", "a 200 answer without any usage", "answer"),
    Scenario("S06", "usage-estimated", "usage estimated from the body, not tokenised", "answer"),
    _r("S07", "invalid-key", "401 Invalid token"),
    _r("S07b", "key-quota-used", "401 the key's quota is used up (Chinese message)"),
    _r("S07c", "key-echoed", "401 echoing the whole key in the message"),
    _r("S07d", "header-echoed", "401 echoing the Authorization header"),
    _r("S08", "no-balance", "403 insufficient_user_quota (English)"),
    _r("S08b", "no-balance-cn", "403 insufficient_user_quota (Chinese)"),
    _r("S09", "no-channel", "503 no channel for the model in the group (Chinese)"),
    _r("S09b", "model-not-found", "503 model_not_found: no available channel for the model"),
    _r("S10", "upstream-saturated", "429 upstream saturated, no Retry-After"),
    _r("S10b", "upstream-saturated-nocode", "429 upstream saturated, code null"),
    _r("S11", "limiter-empty-429", "429 from the gateway's limiter: empty body, no headers"),
    _r("S12", "retry-after", "429 with Retry-After and retry-after-ms"),
    _r("S13", "upstream-unreachable", "500 do_request_failed: the upstream was not reached"),
    _r("S14", "no-price", "500 model_price_error: never worth retrying"),
    _r("S15", "upstream-502", "502 bad_response_status_code relayed from upstream"),
    _r("S15b", "upstream-503", "503 with the literal message openai_error"),
    _r("S16", "nginx-502", "502 nginx HTML page"),
    _r("S16b", "nginx-504", "504 nginx HTML page"),
    _r("S16c", "cloudflare-524", "524 Cloudflare HTML page"),
    _r("S16d", "cloudflare-524-json", "524 Cloudflare problem+json"),
    _r("S16e", "cloudflare-520", "520 Cloudflare HTML page"),
    _r("S17", "error-in-200", "HTTP 200 whose body is an error (Gemini's integer code)"),
    Scenario("S18", "error-mid-stream", "an error event mid-stream, then [DONE]", "stream"),
    Scenario("S19", "no-finish", "[DONE] mid-stream with no finish reason", "stream"),
    Scenario("S20", "dropped", "the connection closed mid-stream, no [DONE]", "stream"),
    Scenario("S21", "stall", "no bytes for stall_s seconds mid-stream, then the rest", "stream"),
    Scenario("S22", "only-done", "a stream that is only data: [DONE]", "stream"),
    Scenario(
        "S22b",
        "empty-finish",
        "an empty answer that finishes: no content, no usage (streamed: delta {} then stop)",
        "answer+stream",
    ),
    _r("S23", "error-as-sse", "503 error JSON sent as text/event-stream"),
    Scenario("S24", "finish-max-tokens", "finish reason max_tokens", "answer+stream"),
    Scenario("S24b", "finish-null", "finish reason null (streamed: tool_use)", "answer+stream"),
    Scenario(
        "S24c",
        "reasoning-only",
        "empty content, text in reasoning_content (streamed: finish refusal)",
        "answer+stream",
    ),
    Scenario("S24d", "content-filter", "finish reason content_filter", "answer+stream"),
    Scenario(
        "S25",
        "slow-then-504",
        "a slow answer cut by nginx with a 504 page",
        "replace",
        REFUSALS["S25"],
        slow=True,
    ),
    _r("S26", "context-too-long", "400 context_length_exceeded passed through"),
    _r("S26b", "content-policy", "400 content_policy_violation passed through"),
    Scenario("S30", "long-line", "an SSE line longer than 64 KiB", "stream"),
    Scenario("S30b", "long-line-cut", "an SSE line over 64 KiB, then [DONE] early", "stream"),
    _r("E400", "invalid-model-name", "400 Invalid model name, as LiteLLM proxy words it"),
    _r("E404", "invalid-url", "404 Invalid URL"),
    _r("E404b", "model-does-not-exist", "404 model_not_found as OpenAI words it"),
    _r("E408", "timeout-408", "408 request timeout"),
    _r("E409", "conflict-409", "409 conflict"),
    _r("E413", "too-large", "413 read_request_body_failed"),
)

SCENARIOS: dict[str, Scenario] = {s.code: s for s in _TABLE}
FAULTS: dict[str, FaultBuilder] = {s.code: s.build for s in _TABLE if s.build is not None}
ANSWER_SCENARIOS = frozenset(s.code for s in _TABLE if s.how in ("answer", "answer+stream"))
STREAM_SCENARIOS = frozenset(s.code for s in _TABLE if s.how == "stream")


def describe_faults() -> list[str]:
    """Every scenario that concerns a non-streamed request: refusals and bent answers."""
    return sorted([*FAULTS, *ANSWER_SCENARIOS])


def scenario_help() -> str:
    """The scenario table as help text: the key rule, then one line per scenario."""
    lines = [
        KEY_RULE,
        "",
        f"Fault scenarios (header {SCENARIO_HEADER}: CODE, or --fault CODE=RATE):",
    ]
    width = max(len(s.code) + len(s.name) for s in _TABLE) + 3
    for s in _TABLE:
        label = f"{s.code} {s.name}"
        lines.append(f"  {label:<{width}}{s.meaning} [{s.produced}]")
    return "\n".join(lines)


def parse_fault(spec: str) -> tuple[str, float]:
    """``"S13=0.05"`` as ``("S13", 0.05)``; ValueError naming what is wrong otherwise."""
    code, sep, rate_text = spec.partition("=")
    code = code.strip()
    if not sep:
        raise ValueError(f"fault {spec!r}: expected CODE=RATE, e.g. S13=0.05")
    if code not in SCENARIOS:
        raise ValueError(f"fault {spec!r}: unknown scenario {code!r} (see --help for the list)")
    try:
        rate = float(rate_text)
    except ValueError:
        raise ValueError(f"fault {spec!r}: rate {rate_text.strip()!r} is not a number") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"fault {spec!r}: rate must be between 0 and 1")
    return code, rate
