"""How a gateway error leaves a gRPC call: its status code, message and trailing metadata."""

from __future__ import annotations

import asyncio
import logging

import grpc

from vmpool.codec import CodecError

from ..errors import TidegateError

log = logging.getLogger("tidegate.grpc")

# HTTP status carried by a TidegateError -> gRPC status code (gRPC's own HTTP mapping, inverted).
STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_code(status: int) -> grpc.StatusCode:
    return STATUS_CODES.get(status, grpc.StatusCode.INTERNAL)


# a refusal a client should retry (RESOURCE_EXHAUSTED for 429, UNAVAILABLE) says when, as the
# HTTP answer's Retry-After does; 413's RESOURCE_EXHAUSTED is not one (the same call fails again)
RETRYABLE = frozenset({429, 502, 503})
DEFAULT_RETRY_AFTER_S = "1"
# HTTP headers with no meaning in gRPC metadata (HTTP/2 forbids the connection-specific ones)
_NOT_METADATA = frozenset(
    {"connection", "content-length", "content-type", "keep-alive", "te", "transfer-encoding"}
)


def error_trailing(exc: TidegateError | CodecError, context=None) -> tuple:
    """An error's headers as trailing metadata (with the call's ``x-request-id`` once known);
    a retryable refusal always carries ``retry-after``."""
    meta = dict(_trailing_set(context))
    for key, value in exc.headers.items():
        text = str(value)  # (gRPC takes printable ASCII in a text value, and fails the call else)
        if key.lower() not in _NOT_METADATA and text.isascii() and text.isprintable():
            meta[key.lower()] = text
    if exc.status in RETRYABLE:
        meta.setdefault("retry-after", DEFAULT_RETRY_AFTER_S)
    return tuple(meta.items())


def _trailing_set(context) -> tuple:
    """The trailing metadata a handler already set (abort's replaces it)."""
    try:
        return tuple(context.trailing_metadata() or ()) if context is not None else ()
    except (AttributeError, NotImplementedError):
        return ()


async def guard(context, fn, *args):
    """Run ``fn`` (sync or async); a TidegateError or CodecError aborts with its status code."""
    try:
        out = fn(*args)
        return await out if asyncio.iscoroutine(out) else out
    except (TidegateError, CodecError) as exc:
        await context.abort(grpc_code(exc.status), exc.message, error_trailing(exc, context))
    except (asyncio.CancelledError, grpc.aio.AbortError):
        raise
    except Exception as exc:  # never a bare failure: log it, answer INTERNAL with its kind
        log.exception("unhandled error in gRPC call")
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
