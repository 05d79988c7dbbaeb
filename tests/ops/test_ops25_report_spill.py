"""Rows a gateway stopping in a database outage spilled (gateway.ledger.spill) are in the next
`tidegate report`, not only after the next gateway start; and a spill file is found again when
the gateway starts on the same data directory spelt another way (relative, absolute)."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

from gateway.ledger import Ledger, make_backend, row_values
from gateway.ledger.spill import SpillFile
from ops.cli import main


def _row(i: int, tenant: str, cost_usd: float):
    return row_values(f"r{i}", time.time(), tenant, "mlp", "vm", 200, 2.0, cost_usd=cost_usd)


def _ledger_with_rows(path) -> None:
    async def write():
        ledger = Ledger(path)
        await ledger.start()
        await ledger.record(_row(0, "acme", 0.0125))
        await ledger.record(_row(1, "globex", 0.0031))
        await ledger.close()

    asyncio.run(write())


def _spill(directory, ledger_path, rows) -> SpillFile:
    """What a gateway stopping in an outage leaves (Ledger._spill_queue), still open."""
    spill = SpillFile(directory, make_backend(ledger_path).describe())
    spill.append([(*values, f"spilled-{n}") for n, values in enumerate(rows)])
    return spill


def _report(capsys, data_dir) -> tuple[dict, str]:
    assert main(["report", "--data-dir", str(data_dir), "--format", "json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_a_report_counts_the_rows_a_stopped_gateway_spilled(tmp_path, capsys):
    data = tmp_path / "data"
    _ledger_with_rows(data / "ledger.sqlite")
    spill = _spill(data, data / "ledger.sqlite", [_row(2, "acme", 0.0071), _row(3, "acme", 0.02)])

    report, err = _report(capsys, data)  # its writer still holds it (a stop under way)
    assert report["tenants"]["acme"]["requests"] == 1
    assert "still being written" in err

    spill.close()  # the stop ends
    report, err = _report(capsys, data)
    tenants = report["tenants"]
    assert {t: v["requests"] for t, v in tenants.items()} == {"acme": 3, "globex": 1}
    total = sum(Decimal(str(v["cost_usd"])) for v in tenants.values())
    assert total.quantize(Decimal("0.01")) == Decimal("0.04")  # 0.0125+0.0031+0.0071+0.02
    assert "2 rows a stopped gateway spilled" in err
    assert list(data.glob("ledger-spill-*")) == []
    report, _ = _report(capsys, data)  # written once: not again
    assert report["tenants"]["acme"]["requests"] == 3


def test_a_start_on_the_same_directory_spelt_otherwise_writes_the_spill(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _ledger_with_rows("data/ledger.sqlite")
    _spill(tmp_path / "data", "data/ledger.sqlite", [_row(2, "acme", 0.5)]).close()
    again = Ledger(tmp_path / "data" / "ledger.sqlite")  # serve --data-dir /abs/data this time
    assert again.replayed == 1
    assert make_backend("data/ledger.sqlite").query("SELECT COUNT(*) FROM requests")[0][0] == 3
    again.backend.close()
