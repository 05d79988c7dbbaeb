"""The seam between the burst runtime and a function platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, runtime_checkable


class InvokeErrorKind(str, Enum):
    """Why an invocation failed; a ``str`` enum so logs and messages read as plain words."""

    THROTTLED = "Throttled"  # the platform's concurrency cap: retry with backoff
    OUT_OF_MEMORY = "OutOfMemory"  # the function went over its memory size
    TIMEOUT = "Timeout"  # the function ran past its timeout
    CRASHED = "Crashed"  # the instance died mid-invocation (exit, signal)
    FUNCTION_ERROR = "FunctionError"  # the handler raised
    TRANSPORT = "Transport"  # no answer from the platform (connection, read timeout)
    NOT_FOUND = "NotFound"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    ACCESS_DENIED = "AccessDenied"
    SERVICE_ERROR = "ServiceError"  # the platform's own 5xx
    BAD_REQUEST = "BadRequest"

    def __str__(self) -> str:
        return self.value


class InvokeError(Exception):
    """An invocation failed. ``kind`` says why (an ``InvokeErrorKind``)."""

    def __init__(
        self,
        message: str,
        kind: InvokeErrorKind | str = InvokeErrorKind.FUNCTION_ERROR,
        billing: "Billing | None" = None,
    ):
        super().__init__(message)
        self.kind = InvokeErrorKind(kind)
        self.billing = billing


@dataclass
class Billing:
    """What one invocation cost, as the platform reports it (Lambda's REPORT line)."""

    duration_ms: float = 0.0
    billed_ms: int = 0  # rounded up to the platform's granularity (1 ms on Lambda and local)
    memory_mb: int = 0
    max_memory_used_mb: int = 0
    cold_start: bool = False
    init_ms: float = 0.0

    @property
    def gb_seconds(self) -> float:
        return self.billed_ms / 1000.0 * self.memory_mb / 1024.0


@dataclass
class InvokeResult:
    payload: bytes
    billing: Billing = field(default_factory=Billing)


@runtime_checkable
class Invoker(Protocol):
    """Invokes a named function synchronously and returns its payload and billing record."""

    async def invoke(self, function: str, payload: bytes) -> InvokeResult:
        """Raise ``InvokeError`` when the platform or the function reports an error."""
        ...

    async def close(self) -> None: ...
