"""Per-invocation bills of the local runtime, and the log tail that carries them (REPORT line)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class BillingRecord:
    """One invocation's bill, as Lambda's REPORT line states it."""

    request_id: str
    function: str
    start_unix_s: float
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_used_mb: int
    cold_start: bool
    init_ms: float
    error_type: str | None = None

    def report_line(self) -> str:
        line = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {self.billed_ms} ms\tMemory Size: {self.memory_mb} MB\t"
            f"Max Memory Used: {self.max_memory_used_mb} MB\t"
        )
        if self.cold_start:
            line += f"Init Duration: {self.init_ms:.2f} ms\t"
        if self.error_type == "Sandbox.Timedout":
            line += "Status: timeout"
        elif self.error_type in ("Runtime.OutOfMemory", "Runtime.ExitError"):
            line += f"Status: error\tError Type: {self.error_type}"
        return line


@dataclass
class Invocation:
    """What the runtime core returns: the payload (result or error JSON), log tail and bill."""

    payload: bytes
    error_type: str | None  # None on success; else the errorType in the payload
    log_tail: str
    billing: BillingRecord


def bill(
    *,
    function: str,
    memory_mb: int,
    request_id: str,
    start_unix_s: float,
    duration_ms: float,
    peak_mb: int,
    cold: bool,
    init_ms: float,
    body: bytes,
    error_type: str | None,
    logs: str,
) -> Invocation:
    """The invocation's record at 1 ms granularity, with Lambda's START/END/REPORT log tail."""
    duration_ms = round(duration_ms, 2)
    record = BillingRecord(
        request_id=request_id,
        function=function,
        start_unix_s=start_unix_s,
        duration_ms=duration_ms,
        billed_ms=max(1, math.ceil(duration_ms)),
        memory_mb=memory_mb,
        max_memory_used_mb=int(peak_mb),
        cold_start=cold,
        init_ms=round(init_ms, 2),
        error_type=error_type,
    )
    if logs and not logs.endswith("\n"):
        logs += "\n"
    log = (
        f"START RequestId: {request_id} Version: $LATEST\n{logs}"
        f"END RequestId: {request_id}\n{record.report_line()}\n"
    )
    return Invocation(body, error_type, log, record)
