"""Reading a running gateway's ledger from another process, as a user's script would.

The gateway writes each row to its journal before the answer and folds the rows into the SQLite
file every ``[ledger] journal_fold_ms`` (gateway.ledger.journal): a reader in another process
sees a row within that interval, so it waits for the rows it expects (up to ``timeout_s``)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def ledger_rows(
    data: Path, sql: str, params: tuple = (), *, at_least: int = 1, timeout_s: float = 30.0
) -> list[tuple]:
    """``sql``'s rows from ``data/ledger.sqlite`` once there are ``at_least`` of them (or the
    rows there are when ``timeout_s`` runs out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with sqlite3.connect(Path(data) / "ledger.sqlite") as db:
            rows = db.execute(sql, params).fetchall()
        if len(rows) >= at_least or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)
