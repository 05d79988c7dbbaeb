"""``[ledger] spill_scan_s``: how often a running gateway writes the spill files another gateway
on its data directory left; a bad value is one line naming the setting."""

from __future__ import annotations

import asyncio
import time
from dataclasses import astuple

import pytest
from pydantic import ValidationError

from gateway.ledger import Ledger, LedgerRow, LedgerSettings
from gateway.ledger.spill import SpillFile
from gateway.settings import Settings, describe_error


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


@pytest.mark.parametrize("value", ["-1", "7200", '"soon"'])
def test_a_bad_scan_interval_is_one_line_naming_it(tmp_path, value):
    config = tmp_path / "tidegate.toml"
    config.write_text(f"[ledger]\nspill_scan_s = {value}\n")
    with pytest.raises(ValidationError) as err:
        Settings.load(config)
    line = describe_error(err.value)
    assert "ledger.spill_scan_s" in line and "\n" not in line
