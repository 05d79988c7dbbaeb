"""Where a benchmark's error answers came from: each non-200 answer joined (by its
``x-request-id``) to the gateway's ledger row, which says the path it was routed to, the
routing reason and how long it took, then grouped by status, path and message.

Used by ``async_step.py``; any benchmark that keeps its gateway's data directory can call
``ledger_errors`` and ``breakdown`` the same way.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ErrorRow:
    tenant: str
    status: int
    path: str  # the ledger's path ("vm", "burst"), "-" when the request never reached routing
    reason: str  # the routing reason
    latency_ms: float  # the gateway's own figure
    message: str  # the error body, numbers masked so equal causes group together


def mask(message: str, width: int = 110) -> str:
    """The message with ids and numbers replaced, so one cause is one group."""
    message = re.sub(r"[0-9a-f]{16,}", "<id>", message)
    return re.sub(r"\d+(\.\d+)?", "N", message)[:width]


def ledger_errors(ledger: Path) -> dict[str, tuple[str, str, float]]:
    """Per request id: (path, reason, latency_ms) of every non-200 ledger row."""
    if not ledger.exists():
        return {}
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT id, path, reason, latency_ms FROM requests WHERE status != 200"
        ).fetchall()
    return {rid: (path, reason, ms) for rid, path, reason, ms in rows if rid}


def join(
    answers: list[tuple[str, int, str, str, float]], ledger: dict[str, tuple[str, str, float]]
) -> list[ErrorRow]:
    """``answers``: (tenant, status, request_id, error body, client latency_ms) of each error."""
    out = []
    for tenant, status, request_id, body, client_ms in answers:
        path, reason, ms = ledger.get(request_id, ("-", "-", client_ms))
        out.append(ErrorRow(tenant, status, path, reason, ms, mask(body)))
    return out


def breakdown(rows: list[ErrorRow]) -> list[dict]:
    """Groups by (tenant, status, path, reason, message), the largest first, with the range of
    the gateway's latency for each."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r.tenant, r.status, r.path, r.reason, r.message), []).append(
            r.latency_ms
        )
    out = [
        {
            "tenant": k[0],
            "status": k[1],
            "path": k[2],
            "reason": k[3],
            "message": k[4],
            "count": len(v),
            "min_ms": min(v),
            "max_ms": max(v),
        }
        for k, v in groups.items()
    ]
    return sorted(out, key=lambda g: -g["count"])


def print_breakdown(title: str, groups: list[dict]) -> None:
    if not groups:
        print(f"{title}: no errors")
        return
    total = Counter(g["tenant"] for g in groups for _ in range(g["count"]))
    print(f"{title}: " + ", ".join(f"{t} {n}" for t, n in sorted(total.items())))
    for g in groups:
        print(
            f"  {g['tenant']:<6}{g['status']:>4} {g['path']:<6}{g['reason']:<22}{g['count']:>5}"
            f"  {g['min_ms']:>7.0f}-{g['max_ms']:<7.0f}ms  {g['message']}"
        )
