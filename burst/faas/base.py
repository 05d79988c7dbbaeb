"""The seam between the burst runtime and a function platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class InvokeError(Exception):
    """An invocation failed. ``kind`` is a stable machine-readable reason."""

    def __init__(self, message: str, kind: str = "FunctionError", billing: "Billing | None" = None):
        super().__init__(message)
        self.kind = kind  # e.g. "Throttled", "OutOfMemory", "Timeout", "FunctionError", "Transport"
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

    async def close(self) -> None:
        ...
