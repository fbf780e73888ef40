"""The refusals of one-api/new-api gateways, as the built-in gateway sends them.

Each scenario of ../shared/GATEWAYS.md section 8 that replaces an answer has a
builder here returning the exact status, headers and body a real gateway puts
on the wire. ``REFUSALS`` maps scenario codes (``S07``, ``S10b``...) to
builders; what each one means is in the scenario table (``scenarios.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class FaultContext:
    """What a fault needs to word its answer like the real gateway."""

    request_id: str
    model: str
    authorization: str = ""


FaultBuilder = Callable[[FaultContext], web.Response]


def _error(
    status: int,
    message: str,
    ctx: FaultContext,
    *,
    type_: str = "new_api_error",
    code: object = None,
    param: object = "",
    headers: dict[str, str] | None = None,
    suffix: bool = True,
) -> web.Response:
    text = f"{message} (request id: {ctx.request_id})" if suffix else message
    body = {"error": {"message": text, "type": type_, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _html(status: int, title: str, server: str = "nginx") -> Callable[[FaultContext], web.Response]:
    def build(ctx: FaultContext) -> web.Response:
        page = (
            f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n<hr><center>{server}</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
        return web.Response(status=status, text=page, content_type="text/html")

    return build


def _cloudflare_json(ctx: FaultContext) -> web.Response:
    body = {
        "type": "https://developers.cloudflare.com/support/troubleshooting/http-status-codes/"
        "cloudflare-5xx-errors/error-524/",
        "title": "Error 524: A timeout occurred",
        "status": 524,
        "detail": "The origin web server did not return a complete response within the "
        "120-second Proxy Read Timeout window.",
    }
    return web.Response(status=524, text=json.dumps(body), content_type="application/problem+json")


def _empty_429(ctx: FaultContext) -> web.Response:
    return web.Response(status=429)


def _retry_after_429(ctx: FaultContext) -> web.Response:
    return _error(
        429,
        "Rate limit reached for requests. Please try again in 1s.",
        ctx,
        type_="requests",
        code="rate_limit_exceeded",
        headers={"Retry-After": "1", "retry-after-ms": "1000"},
        suffix=False,
    )


def _sse_error(ctx: FaultContext) -> web.Response:
    body = {
        "error": {
            "message": f"bad response status code 503 (request id: {ctx.request_id})",
            "type": "upstream_error",
            "param": "503",
            "code": "bad_response_status_code",
        }
    }
    return web.Response(status=503, text=json.dumps(body), content_type="text/event-stream")


REFUSALS: dict[str, FaultBuilder] = {
    # S07: the key is refused.
    "S07": lambda c: _error(401, "Invalid token", c, code=""),
    # Some gateways echo what they were sent: the whole key, or the header.
    "S07c": lambda c: _error(401, f"invalid token {c.authorization.removeprefix('Bearer ')}", c),
    "S07d": lambda c: _error(401, f"bad header Authorization: {c.authorization}", c),
    "S07b": lambda c: _error(
        401, "[sk-abc***xyz] 该令牌额度已用尽 !token.UnlimitedQuota && token.RemainQuota = -12", c
    ),
    # S08: the account has no balance.
    "S08": lambda c: _error(
        403, "user quota is not enough", c, type_="one_api_error", code="insufficient_user_quota"
    ),
    "S08b": lambda c: _error(
        403, "用户额度不足, 剩余额度: ＄0.010000", c, code="insufficient_user_quota"
    ),
    # S09: no channel serves the model.
    "S09": lambda c: _error(
        503, f"当前分组 default 下对于模型 {c.model} 无可用渠道", c, type_="one_api_error"
    ),
    "S09b": lambda c: _error(
        503,
        f"No available channel for model {c.model} under group default (distributor)",
        c,
        code="model_not_found",
    ),
    # S10: upstream saturated, no Retry-After, type/code vary by fork.
    "S10": lambda c: _error(
        429, "当前分组上游负载已饱和，请稍后再试", c, type_="requests", code="rate_limit_exceeded"
    ),
    "S10b": lambda c: _error(429, "当前分组上游负载已饱和，请稍后再试", c, code=None),
    # S11: the gateway's own limiter: empty body, no headers.
    "S11": _empty_429,
    # S12: Retry-After and retry-after-ms.
    "S12": _retry_after_429,
    # S13: the upstream could not be reached.
    "S13": lambda c: _error(500, "请求上游地址失败", c, code="do_request_failed"),
    # S14: the model has no price: never retried.
    "S14": lambda c: _error(
        500,
        f"模型 {c.model} 倍率或价格未配置, 请联系管理员设置；"
        f"Model {c.model} ratio or price not set",
        c,
        code="model_price_error",
    ),
    # S15: upstream 502/503 relayed.
    "S15": lambda c: _error(
        502,
        "bad response status code 502",
        c,
        type_="upstream_error",
        code="bad_response_status_code",
        param="502",
    ),
    "S15b": lambda c: _error(
        503, "openai_error", c, type_="bad_response_status_code", code="bad_response_status_code"
    ),
    # S16: proxy pages in front of the gateway.
    "S16": _html(502, "502 Bad Gateway"),
    "S16b": _html(504, "504 Gateway Time-out"),
    "S16c": _html(524, "524: A timeout occurred", server="cloudflare"),
    "S16d": _cloudflare_json,
    "S16e": _html(520, "520: Web server is returning an unknown error", server="cloudflare"),
    # S25: a slow non-streamed answer cut by nginx (the gateway waits first).
    "S25": _html(504, "504 Gateway Time-out"),
    # S17: HTTP 200 carrying an error, Gemini's integer code.
    "S17": lambda c: _error(
        200, "No candidates returned", c, type_="server_error", code=500, suffix=False
    ),
    # S23: an error JSON sent as text/event-stream.
    "S23": _sse_error,
    # S26: upstream 400s passed through.
    "S26": lambda c: _error(
        400,
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 131072 tokens. Please reduce the length of the messages.",
        c,
        type_="invalid_request_error",
        code="context_length_exceeded",
        param="messages",
        suffix=False,
    ),
    "S26b": lambda c: _error(
        400,
        "Your request was rejected as a result of our safety system.",
        c,
        type_="invalid_request_error",
        code="content_policy_violation",
        param=None,
        suffix=False,
    ),
    # Others worth reproducing: 408, 409, 404 model, 413.
    "E408": lambda c: _error(408, "request timeout", c),
    "E409": lambda c: _error(409, "conflict, try again", c),
    "E404": lambda c: _error(
        404,
        "Invalid URL (POST /v1/chat/completions)",
        c,
        type_="invalid_request_error",
        code="",
        suffix=False,
    ),
    "E400": lambda c: _error(
        400,
        f"{{'error': '/chat/completions: Invalid model name passed in model={c.model}. "
        "Call `/v1/models` to view available models for your key.'}",
        c,
        type_="None",
        code="400",
        param="None",
        suffix=False,
    ),
    "E404b": lambda c: _error(
        404,
        f"The model `{c.model}` does not exist or you do not have access to it.",
        c,
        type_="invalid_request_error",
        code="model_not_found",
        suffix=False,
    ),
    "E413": lambda c: _error(413, "request body too large", c, code="read_request_body_failed"),
}


def invalid_body(ctx: FaultContext) -> web.Response:
    """400 for a body that is not a JSON object, as new-api words it."""
    return _error(400, "invalid JSON body", ctx, code="invalid_text_request")


def unknown_scenario(name: str) -> web.Response:
    """400 for an ``X-Sim-Scenario`` the gateway does not know (a test's mistake)."""
    body = {
        "error": {
            "message": f"unknown scenario {name!r}",
            "type": "batchrun_mock",
            "param": "X-Sim-Scenario",
            "code": "unknown_scenario",
        }
    }
    return web.json_response(body, status=400)
