"""Request messages as the gRPC handlers receive them: parsed, or a marker saying why not.

gRPC's core refuses a message past ``grpc.max_receive_message_length`` before any handler runs,
and on a ``ModelStreamInfer`` stream that looks to the handler exactly like the client closing
its side (grpc.aio gives no reason; ``context.cancelled()`` stays False): such a refusal went
uncounted. So the core's cap is ``CORE_CAP_FACTOR`` times the gateway's own limit
(``max_body_mb``), and the infer deserializers check the limit themselves: a message past it is
a ``TooLarge``, which ModelInfer answers RESOURCE_EXHAUSTED and a stream answers as that
request's error (the stream goes on), each counted and logged as HTTP's 413. Only a message
past the core's cap still ends its call in the core (ModelInfer counts that too:
``server._first_message``).
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from vmpool.wire import too_large_message

# a message up to this many times max_body_mb is read whole before the gateway refuses it
# (memory it holds for a moment, as gRPC's core holds any message it takes whole)
CORE_CAP_FACTOR = 2


def core_cap_bytes(limit_bytes: int) -> int:
    """The ``grpc.max_receive_message_length`` for a gateway limit of ``limit_bytes``."""
    return min(CORE_CAP_FACTOR * limit_bytes, 2**31 - 1)  # (the core takes an int32)


class Malformed:
    """A request message that did not parse (its bytes are not the method's protobuf)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class TooLarge:
    """A request message past the gateway's limit (not parsed)."""

    def __init__(self, size_bytes: int, limit_bytes: int) -> None:
        self.message = too_large_message(limit_bytes, size_bytes)


def lenient(message_type, limit_bytes: int | None = None):
    """A deserializer that hands a parse failure (``Malformed``) or a message past
    ``limit_bytes`` (``TooLarge``) to the method instead of raising in gRPC's core (which
    answers UNKNOWN and logs a traceback for what is the caller's mistake)."""

    def parse(data: bytes):
        if limit_bytes is not None and len(data) > limit_bytes:
            return TooLarge(len(data), limit_bytes)
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return Malformed(exc)

    return parse
