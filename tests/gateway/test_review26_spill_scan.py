"""``[ledger] spill_scan_s``: how often a running gateway writes the spill files another gateway
on its data directory left (a bad value: test_review26_settings.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import astuple

from gateway.ledger import Ledger, LedgerRow, LedgerSettings
from gateway.ledger.spill import SpillFile


def _spill(directory, ledger: Ledger, ids: range) -> None:
    """What a replica stopping in an outage leaves: a closed spill file of its rows."""
    spill = SpillFile(directory, ledger.backend.describe())
    rows = [LedgerRow(f"req-{i}", time.time(), "acme", "mlp", "vm", 200, 2.0) for i in ids]
    spill.append([astuple(row) for row in rows])
    spill.close()


async def _replayed(ledger: Ledger, n: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while ledger.replayed < n:
        assert time.monotonic() < deadline, f"{ledger.replayed} of {n} spilled rows written"
        await asyncio.sleep(0.02)


async def test_the_scan_interval_is_the_settings_one(tmp_path):
    ledger = Ledger.from_settings(LedgerSettings(spill_scan_s=0.1), tmp_path)
    await ledger.start()
    try:
        _spill(tmp_path, ledger, range(3))
        await _replayed(ledger, 3, within_s=10)  # the first scan (at start)
        # the next file waits for the next scan: 0.1 s here; it was 5 s whatever the settings
        _spill(tmp_path, ledger, range(3, 5))
        await _replayed(ledger, 5, within_s=2)
        count = ledger.backend.query("SELECT COUNT(*) FROM requests")[0][0]
        assert count == 5
    finally:
        await ledger.close()
