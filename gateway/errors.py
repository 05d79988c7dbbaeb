"""Errors that carry their HTTP status; one handler renders them as ``{"error": ...}``."""

from __future__ import annotations


# An error message quotes what the client sent (a name, a datatype): a hostile client's 10 MB
# name must not come back as a 10 MB answer (or line of log).
MAX_MESSAGE_CHARS = 2000


def bounded(message: str) -> str:
    """``message``, cut to MAX_MESSAGE_CHARS with a note of how much was left out."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}... ({len(message) - MAX_MESSAGE_CHARS} characters cut)"


class TidegateError(Exception):
    status = 500

    def __init__(self, message: str, status: int | None = None, headers: dict | None = None):
        message = bounded(message)
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}


class BadRequest(TidegateError):
    status = 400


class Unauthorized(TidegateError):
    status = 401


class Forbidden(TidegateError):
    status = 403


class NotFound(TidegateError):
    status = 404


class PayloadTooLarge(TidegateError):
    status = 413


class TooManyRequests(TidegateError):
    status = 429

    def __init__(self, message: str, retry_after_s: float, headers: dict | None = None):
        super().__init__(
            message,
            headers={**(headers or {}), "Retry-After": str(max(1, int(retry_after_s + 0.999)))},
        )


class Unavailable(TidegateError):
    """503: no capacity now. Always with ``Retry-After`` (1 s unless the raiser knows better),
    as gRPC's UNAVAILABLE carries ``retry-after``: a client may try again."""

    status = 503

    def __init__(self, message: str, status: int | None = None, headers: dict | None = None):
        super().__init__(message, status, headers={"Retry-After": "1", **(headers or {})})


class GatewayTimeout(TidegateError):
    status = 504
