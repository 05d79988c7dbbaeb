"""`tidegate report --tenant ""` (a shell variable left unset) is a one-line error: it printed
every tenant's rows under a one-tenant footer ("total $1.225000 for  (its ledger ...)")."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.ledger import Ledger, row_values
from ops.cli import main


@pytest.fixture
def data_dir(tmp_path):
    async def write():
        ledger = Ledger(tmp_path / "ledger.sqlite")
        await ledger.start()
        for i, tenant in enumerate(["acme", "globex"]):
            row = row_values(f"r{i}", time.time(), tenant, "mlp", "vm", 200, 5.0, cost_usd=0.5)
            await ledger.record(row)
        await ledger.close()

    asyncio.run(write())
    return tmp_path


@pytest.mark.parametrize("tenant", ["", "  "])
def test_an_empty_tenant_is_a_one_line_error(data_dir, capsys, tenant):
    assert main(["report", "--data-dir", str(data_dir), "--tenant", tenant]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.strip().count("\n") == 0 and "--tenant is empty" in out.err


def test_a_named_tenant_still_reads_its_own(data_dir, capsys):
    assert main(["report", "--data-dir", str(data_dir), "--tenant", "acme"]) == 0
    text = capsys.readouterr().out
    assert "acme" in text and "globex" not in text


@pytest.mark.parametrize("bill", ["1e300", "1.5e12", "-1", "nan", "inf"])
def test_a_vm_bill_past_a_trillion_dollars_is_a_one_line_error(data_dir, capsys, bill):
    """1e300 printed 300-digit dollar figures in every row; past ~1e12 a float keeps no cents."""
    assert main(["report", "--data-dir", str(data_dir), "--vm-bill-usd", bill]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "--vm-bill-usd must be" in out.err and out.err.count("\n") == 1


def test_a_trillion_dollar_bill_still_reconciles_to_the_cent(data_dir, capsys):
    import json
    from decimal import Decimal

    argv = ["report", "--data-dir", str(data_dir), "--vm-bill-usd", "1e12", "--format", "json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    total = sum(Decimal(repr(t["cost_usd"])) for t in report["tenants"].values())
    assert total.quantize(Decimal("0.01")) == Decimal("1000000000001.00")  # + the ledger's $1
