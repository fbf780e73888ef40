"""batchrun's own errors, classified by what the caller does with them.

::

    BatchrunError                 every error batchrun raises on purpose; exit code in .exit_code
    ├── JobError                  bad job file, data or template: nothing is sent (exit 2)
    ├── LockedError               another run holds the output (exit 2)
    ├── OutputError               a file the user asked for could not be written (exit 2)
    ├── CatalogError              the gateway gave no model list or balance (exit 2)
    └── RequestError              one request failed; the runner records it and goes on
        ├── RetryableError            try again later
        │   ├── RateLimited               429, with the wait the gateway asked for, if any
        │   ├── ServerError               5xx, an HTML error page, a 200 with a server error
        │   ├── TimeoutFailure            no complete answer within the timeout
        │   ├── ConnectionFailure         the connection could not be made or was dropped
        │   ├── StreamCut                 a stream ended without a finish reason
        │   └── EmptyAnswer               a 200 with no content, tool call, refusal nor usage
        ├── RowError                  this request will never succeed: 400, 404, 413, refusals
        │   ├── ArtifactError             an answer's file is not of its promised type, or too large
        │   └── TaskUnfinished            a video task running past its timeout: kept for next run
        ├── ModelUnavailable          the gateway has no channel for, or does not know, this model
        └── FatalRequestError         the key or the account is unusable: the run stops (exit 3)

``tests/test_errors.py`` checks this drawing against the classes. Only the
client raises ``RequestError`` subclasses (it translates the transport's
exceptions at that one boundary); only the command line turns
``BatchrunError`` into messages and exit codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchrun.ratelimits import RateLimitAdvice

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class BatchrunError(Exception):
    """Base of every error batchrun raises on purpose."""

    exit_code = EXIT_USAGE


class JobError(BatchrunError):
    """The job file, its data or its templates are wrong; nothing was sent.

    ``field`` names the job field at fault (``output.path``, ``models[1]``,
    ``prompt.user``) as data, so the file and line can be found without
    reading the message; ``str()`` reads ``field: message``.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


class LockedError(BatchrunError):
    """Another live run is writing the same output."""

    exit_code = EXIT_USAGE


class OutputError(BatchrunError):
    """A file the user asked for (a report, a table, scores) could not be written."""

    exit_code = EXIT_USAGE


class CatalogError(BatchrunError):
    """The gateway did not give a model list or a balance; ``status`` is its HTTP status."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RequestError(BatchrunError):
    """One request failed. Carries what the results row records about it."""

    error_type = "error"
    exit_code = EXIT_USAGE

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code


class RetryableError(RequestError):
    """A failure that may pass if the same request is sent again later."""

    error_type = "retryable"

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, code=code)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """The gateway said slow down (HTTP 429); ``advice`` is what its headers said, if anything."""

    error_type = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        advice: RateLimitAdvice | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, code=code, retry_after=retry_after)
        self.advice = advice


class ServerError(RetryableError):
    """The gateway or its upstream failed (5xx, HTML error page, 200 with a server error)."""

    error_type = "server_error"


class TimeoutFailure(RetryableError):
    """No complete answer within the timeout."""

    error_type = "timeout"


class ConnectionFailure(RetryableError):
    """The connection could not be made or was dropped."""

    error_type = "connection"


class StreamCut(RetryableError):
    """A streamed answer ended without a finish reason."""

    error_type = "stream_cut"


class EmptyAnswer(RetryableError):
    """A 200 whose answer holds nothing: no content, tool call, refusal nor usage."""

    error_type = "empty_answer"


class RowError(RequestError):
    """A failure that sending the same request again will not fix."""

    error_type = "bad_request"


class ArtifactError(RowError):
    """An answer's file is not of the type it promised (by magic number), or over a bound."""

    error_type = "bad_artifact"


class TaskUnfinished(RowError):
    """A remote task (a video) still running at its timeout: not retried in this run, but
    not done either, so its task stays recorded and the next run collects it."""

    error_type = "task_unfinished"


class ModelUnavailable(RequestError):
    """The gateway offers no channel for this model, or does not know it (wrong id, not in
    the key's group, "Invalid model name")."""

    error_type = "model_unavailable"


class FatalRequestError(RequestError):
    """The key or the account cannot be used: every further request would fail too."""

    error_type = "auth"
    exit_code = EXIT_REFUSED
