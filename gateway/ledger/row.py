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
# The table's columns: ``COLUMNS`` and a key per row that ``Ledger.record`` gives it (unique in
# the table, schema version 5), so a batch written again after a commit whose acknowledgement
# was lost (PostgreSQL: the connection dropped after COMMIT) adds no row twice. A row written
# without one (a tool writing a backend directly, a journal segment of an older gateway) stores
# NULL, which never conflicts.
STORED_COLUMNS: tuple[str, ...] = (*COLUMNS, "row_key")


def keyed(rows: list[tuple]) -> list[tuple]:
    """``rows`` with a ``row_key`` each (None for rows that came without one)."""
    width = len(STORED_COLUMNS)
    if all(len(row) == width for row in rows):
        return rows
    return [row if len(row) == width else (*row, None) for row in rows]


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
