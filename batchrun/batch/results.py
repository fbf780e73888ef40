"""Answer lines of a batch as result rows in the online schema.

Each line is joined to its request by ``custom_id`` (the request key). A
successful answer is parsed by the client's own parsers
(``client.parse_answer``); a failed line is
classified by ``classify_error`` like an online failure (its HTTP status);
lines the provider expired or failed as a whole get ``batch_expired`` or
``batch_failed``. Latency columns stay null: a batch line has none.
``read_lines`` tells a file cut short from a whole one.
"""

from __future__ import annotations

import json
import time
from typing import Any

from batchrun.classify import classify_error
from batchrun.client import parse_answer
from batchrun.errors import RequestError
from batchrun.record import Request, Result
from batchrun.wire import JsonObject

# Anthropic's error types as the HTTP status the same error has online.
ANTHROPIC_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
EXPIRED = "batch_expired"
FAILED = "batch_failed"


def read_lines(data: bytes) -> tuple[list[JsonObject], bool]:
    """The JSON lines of a results file, and whether it is whole (no line cut short)."""
    lines: list[JsonObject] = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            return lines, False
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            return lines, False
        lines.append(line)
    return lines, data.endswith(b"\n") or not data


class RowMaker:
    """Turns the lines of one batch into rows: which batch, when submitted, the secrets."""

    def __init__(self, batch_id: str, submitted_at: float, secrets: list[str]) -> None:
        self.batch_id = batch_id
        self.submitted_at = submitted_at
        self.secrets = secrets

    def openai(self, line: JsonObject, request: Request) -> Result | None:
        """An OpenAI output or error line as a row (None for a cancelled line: unsent)."""
        error = line.get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or FAILED)
            if code == "batch_cancelled":
                return None
            kind = code if code.startswith("batch_") else FAILED
            return self.failed(request, kind, str(error.get("message") or code), None)
        response = _dict(line.get("response"))
        status = int(response.get("status_code") or 0)
        body = response.get("body")
        raw = json.dumps(body).encode()
        if status != 200:
            error_class = classify_error(status, {}, raw, body, self.secrets)
            return self.failed(request, error_class.error_type, error_class.message, status)
        return self._parsed(request, raw)

    def anthropic(self, line: JsonObject, request: Request) -> Result | None:
        """An Anthropic results line as a row (None for a cancelled request: unsent)."""
        result = _dict(line.get("result"))
        kind = result.get("type")
        if kind == "succeeded":
            return self._parsed(request, json.dumps(result.get("message")).encode())
        if kind == "expired":
            return self.failed(request, EXPIRED, "the batch expired before this request ran", None)
        if kind == "errored":
            error = _dict(result.get("error"))
            inner = _dict(error.get("error")) or error
            status = ANTHROPIC_STATUS.get(str(inner.get("type")), 500)
            raw = json.dumps(error).encode()
            error_class = classify_error(status, {}, raw, error, self.secrets)
            return self.failed(request, error_class.error_type, error_class.message, status)
        return None

    def _parsed(self, request: Request, raw: bytes) -> Result:
        api = request.model.api
        try:
            completion = parse_answer(api, 200, {}, raw, self.secrets)
        except RequestError as exc:
            return self.failed(request, exc.error_type, exc.message, exc.http_status)
        parsed: str | None = None
        valid: bool | None = None
        if request.model.response_schema is not None:
            from batchrun.scoring import check_structured

            parsed, valid = check_structured(completion.response, request.model.response_schema)
        return self._row(request, "ok")._replace(
            response=completion.response,
            reasoning=completion.reasoning,
            finish_reason=completion.finish_reason,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            total_tokens=completion.total_tokens,
            cached_tokens=completion.cached_tokens,
            reasoning_tokens=completion.reasoning_tokens,
            tool_calls=completion.tool_calls,
            embedding=completion.embedding,
            parsed=parsed,
            parsed_valid=valid,
            http_status=200,
            response_id=completion.response_id,
            served_model=completion.served_model,
        )

    def failed(
        self, request: Request, error_type: str, message: str, http_status: int | None
    ) -> Result:
        """A failed row of this batch."""
        return self._row(request, "error")._replace(
            error_type=error_type, error_message=message, http_status=http_status
        )

    def _row(self, request: Request, status: str) -> Result:
        return Result(
            prompt_id=request.prompt_id,
            model=request.model.name,
            model_id=request.model.model_id,
            sample=request.sample,
            request_key=request.key,
            status=status,
            attempts=1,
            started_at=self.submitted_at,
            finished_at=time.time(),
            mode="batch",
            batch_id=self.batch_id,
            submitted_at=self.submitted_at,
        )


def _dict(value: Any) -> JsonObject:
    return value if isinstance(value, dict) else {}
