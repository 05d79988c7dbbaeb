"""Admission in the local runtime: Lambda's concurrency caps (account-wide and reserved per
function) and a memory budget for live instances (warm or busy), reclaiming idle ones first."""

from __future__ import annotations

from burst.faas.lambda_wire import throttled

DEFAULT_MEMORY_SHARE = 0.5  # of the machine's RAM, when no budget is given


def machine_memory_mb() -> int:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 4096


def default_memory_budget_mb(share: float = DEFAULT_MEMORY_SHARE) -> int:
    return int(machine_memory_mb() * share)


class Admission:
    """Counts invocations in flight and memory reserved by live instances (each reserves its
    function's memory size, which the watchdog enforces, so the sum bounds real use)."""

    def __init__(self, concurrency: int, memory_budget_mb: int):
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if memory_budget_mb < 64:
            raise ValueError("memory_budget_mb must be >= 64")
        self.concurrency = concurrency
        self.memory_budget_mb = memory_budget_mb
        self.in_flight = 0
        self.unreserved_in_flight = 0
        self.reserved_mb = 0  # memory sizes of live instances (and ones starting)

    def admit(self, state, reserved_by_functions: int) -> None:
        """Count one invocation of ``state``'s function in, or raise a 429 (throttled)."""
        reserved = state.spec.reserved_concurrency
        if reserved is not None:
            if state.in_flight >= reserved:
                raise throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
        else:
            # unreserved functions share what reserved ones leave, as on Lambda
            if (
                self.unreserved_in_flight >= self.concurrency - reserved_by_functions
                or self.in_flight >= self.concurrency
            ):
                raise throttled("ConcurrentInvocationLimitExceeded")
            self.unreserved_in_flight += 1
        state.in_flight += 1
        self.in_flight += 1

    def release(self, state) -> None:
        state.in_flight -= 1
        self.in_flight -= 1
        if state.spec.reserved_concurrency is None:
            self.unreserved_in_flight -= 1

    def free_concurrency(self) -> int:
        return max(0, self.concurrency - self.in_flight)

    def fits(self, memory_mb: int) -> bool:
        return self.reserved_mb + memory_mb <= self.memory_budget_mb

    def reserve(self, memory_mb: int) -> None:
        self.reserved_mb += memory_mb

    def unreserve(self, memory_mb: int) -> None:
        self.reserved_mb = max(0, self.reserved_mb - memory_mb)
