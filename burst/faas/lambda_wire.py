"""AWS Lambda's Invoke wire format, shared by the Lambda invoker, the local invoker and the local
runtime's REST API: paths, the REPORT line, error payloads and their mapping to
``InvokeErrorKind``, and which invocation errors a client retries."""

from __future__ import annotations

import base64
import re

import orjson

from burst.faas.base import Billing, InvokeError, InvokeErrorKind

API_PREFIX = "/2015-03-31"
LOG_TAIL_BYTES = 4096  # Lambda returns the last 4 KB of the log
DEFAULT_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous request/response limit

_REPORT_FIELDS = {
    "duration_ms": re.compile(r"\bDuration:\s*([\d.]+)\s*ms"),
    "billed_ms": re.compile(r"Billed Duration:\s*(\d+)\s*ms"),
    "memory_mb": re.compile(r"Memory Size:\s*(\d+)\s*MB"),
    "max_memory_used_mb": re.compile(r"Max Memory Used:\s*(\d+)\s*MB"),
    "init_ms": re.compile(r"Init Duration:\s*([\d.]+)\s*ms"),
}
# errorType -> kind; anything else a function raises is FUNCTION_ERROR
_ERROR_KINDS = {
    "Runtime.OutOfMemory": InvokeErrorKind.OUT_OF_MEMORY,
    "Sandbox.Timedout": InvokeErrorKind.TIMEOUT,
    "Runtime.ExitError": InvokeErrorKind.CRASHED,
}
# Lambda's platform error codes -> kind
_API_ERROR_KINDS = {
    "TooManyRequestsException": InvokeErrorKind.THROTTLED,
    "ResourceNotFoundException": InvokeErrorKind.NOT_FOUND,
    "RequestEntityTooLargeException": InvokeErrorKind.PAYLOAD_TOO_LARGE,
    "RequestTooLargeException": InvokeErrorKind.PAYLOAD_TOO_LARGE,
    "ServiceException": InvokeErrorKind.SERVICE_ERROR,
}


def invoke_path(function: str) -> str:
    from urllib.parse import quote

    return f"{API_PREFIX}/functions/{quote(function, safe='')}/invocations"


class RuntimeApiError(Exception):
    """A platform-level error with its HTTP status and Lambda error type (not a function error)."""

    def __init__(self, status: int, error_type: str, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.extra = extra

    def body(self) -> dict:
        # ResourceNotFoundException spells it "Message" in Lambda's service model; others "message"
        key = "Message" if self.error_type == "ResourceNotFoundException" else "message"
        return {"Type": "User", key: str(self), **self.extra}


def throttled(reason: str) -> RuntimeApiError:
    return RuntimeApiError(429, "TooManyRequestsException", "Rate Exceeded.", Reason=reason)


def error_payload(error_type: str, message: str, request_id: str) -> bytes:
    """A function error body as Lambda returns it."""
    return orjson.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": [],
        }
    )


def parse_report(log_tail: str) -> Billing:
    """Billing from the REPORT line of a Lambda log tail (tabs or spaces between fields)."""
    line = next((ln for ln in reversed(log_tail.splitlines()) if ln.startswith("REPORT ")), "")
    billing = Billing()
    if not line:
        return billing
    # "Duration:" also occurs in "Billed Duration:"; the plain one comes first on the line
    for name, pattern in _REPORT_FIELDS.items():
        match = pattern.search(line)
        if match:
            value = match.group(1)
            setattr(
                billing, name, float(value) if name in ("duration_ms", "init_ms") else int(value)
            )
    billing.cold_start = "Init Duration:" in line
    return billing


def decode_log_result(log_result: str | None) -> str:
    if not log_result:
        return ""
    try:
        return base64.b64decode(log_result).decode("utf-8", "replace")
    except ValueError:
        return ""


def function_error(function: str, payload: bytes, billing: Billing) -> InvokeError:
    """The InvokeError for a response flagged with X-Amz-Function-Error."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error_type = str(body.get("errorType", "Unhandled"))
    message = str(body.get("errorMessage", payload[:500].decode("utf-8", "replace")))
    kind = _ERROR_KINDS.get(error_type, InvokeErrorKind.FUNCTION_ERROR)
    return InvokeError(f"{function}: {error_type}: {message}", kind=kind, billing=billing)


def api_error(function: str, status: int, code: str, message: str) -> InvokeError:
    """The InvokeError for a platform error response (429, 404, 413, ...)."""
    kind = _API_ERROR_KINDS.get(code)
    if kind is None:
        kind = InvokeErrorKind.SERVICE_ERROR if status >= 500 else InvokeErrorKind.TRANSPORT
    return InvokeError(f"{function}: {code or status}: {message}", kind=kind)


def retry_invoke_on(exc: BaseException, attempt: int) -> bool:
    """What a client sends again: throttling (with backoff, as Lambda's SDKs do), and once, an
    instance that crashed (the next invocation gets a fresh instance). A function error, an
    out-of-memory or a timeout would fail the same way again: never."""
    if not isinstance(exc, InvokeError):
        return False
    if exc.kind is InvokeErrorKind.THROTTLED:
        return True
    return exc.kind is InvokeErrorKind.CRASHED and attempt == 1
