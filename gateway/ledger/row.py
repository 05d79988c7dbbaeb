"""One ledger row: what a tenant is billed for one answered request."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class LedgerRow:
    id: str
    ts: float  # wall-clock seconds (UTC epoch) when the answer was ready
    tenant: str
    model: str
    path: str  # vm, burst, or reject
    status: int  # the HTTP status the client got
    latency_ms: float
    batch_size: int = 1
    workers: int = 0
    cold_starts: int = 0
    vm_cost_usd: float = 0.0
    function_cost_usd: float = 0.0
    store_cost_usd: float = 0.0
    cost_usd: float = 0.0
    billed_ms: int = 0
    detail: str = ""
    reason: str = ""  # the routing decision's reason (policies.routing.Reason value)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))


def row_values(
    id: str,
    ts: float,
    tenant: str,
    model: str,
    path: str,
    status: int,
    latency_ms: float,
    batch_size: int = 1,
    workers: int = 0,
    cold_starts: int = 0,
    vm_cost_usd: float = 0.0,
    function_cost_usd: float = 0.0,
    store_cost_usd: float = 0.0,
    cost_usd: float = 0.0,
    billed_ms: int = 0,
    detail: str = "",
    reason: str = "",
) -> tuple:
    """A ``LedgerRow``'s values in ``COLUMNS`` order, for ``Ledger.record`` on the hot path
    (no dataclass built per request only to be taken apart)."""
    return (
        id,
        ts,
        tenant,
        model,
        path,
        status,
        latency_ms,
        batch_size,
        workers,
        cold_starts,
        vm_cost_usd,
        function_cost_usd,
        store_cost_usd,
        cost_usd,
        billed_ms,
        detail,
        reason,
    )
