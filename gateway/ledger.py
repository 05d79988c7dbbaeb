"""The ledger: one row per answered request, written in batches off the event loop (SQLite)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import astuple, dataclass, fields
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT, ts REAL NOT NULL, tenant TEXT NOT NULL, model TEXT NOT NULL, path TEXT NOT NULL,
    status INTEGER NOT NULL, latency_ms REAL NOT NULL, batch_size INTEGER NOT NULL,
    workers INTEGER NOT NULL, cold_starts INTEGER NOT NULL, vm_cost_usd REAL NOT NULL,
    function_cost_usd REAL NOT NULL, store_cost_usd REAL NOT NULL, cost_usd REAL NOT NULL,
    billed_ms INTEGER NOT NULL, detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS requests_tenant_ts ON requests (tenant, ts);
"""


@dataclass
class LedgerRow:
    id: str
    ts: float
    tenant: str
    model: str
    path: str
    status: int
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


_COLUMNS = [f.name for f in fields(LedgerRow)]
_INSERT = f"INSERT INTO requests ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


class Ledger:
    """Rows are queued in memory and flushed every ``flush_interval_s``; ``close`` flushes all."""

    def __init__(self, path: str | Path, flush_interval_s: float = 0.2):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush_interval_s = flush_interval_s
        self._pending: list[tuple] = []
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def record(self, row: LedgerRow) -> None:
        self._pending.append(astuple(row))

    async def flush(self) -> None:
        async with self._lock:
            rows, self._pending = self._pending, []
            if rows:
                await asyncio.to_thread(self._write, rows)

    def _write(self, rows: list[tuple]) -> None:
        with self._connect() as db:
            db.executemany(_INSERT, rows)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except sqlite3.Error:
                await asyncio.sleep(1.0)  # keep the rows queued; the next flush retries

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._connect() as db:
            return db.execute(sql, params).fetchall()

    def spent_by_tenant(self) -> dict[str, float]:
        return dict(self.query("SELECT tenant, SUM(cost_usd) FROM requests GROUP BY tenant"))


def now_s() -> float:
    return time.time()
