"""``tidegate report`` over a real SQLite ledger: reconciliation to the cent, filters, formats."""

from __future__ import annotations

import csv
import io
import json
import math
import random
from dataclasses import astuple

import pytest

from gateway.ledger import LedgerRow, make_backend
from ops.cli import main

DAY = 86400.0
T0 = 1_780_000_000.0  # a fixed UTC moment


def _ledger(tmp_path, n: int = 3000, seed: int = 7):
    backend = make_backend(str(tmp_path / "ledger.sqlite"))
    backend.migrate()
    rng = random.Random(seed)
    rows, total = [], 0.0
    for i in range(n):
        tenant = rng.choice(["acme", "globex", "initech"])
        path = rng.choice(["vm", "vm", "burst"])
        status = rng.choice([200] * 18 + [503, 429])
        vm = rng.uniform(1e-7, 5e-6) if path == "vm" and status == 200 else 0.0
        fn = rng.uniform(1e-6, 9e-5) if path == "burst" and status == 200 else 0.0
        store = rng.uniform(0, 2e-6) if fn else 0.0
        row = LedgerRow(
            id=f"r{i}",
            ts=T0 + i * 60.0,
            tenant=tenant,
            model=rng.choice(["resnet18", "mlp"]),
            path=path,
            status=status,
            latency_ms=rng.uniform(5, 900),
            workers=4 if fn else 0,
            vm_cost_usd=vm,
            function_cost_usd=fn,
            store_cost_usd=store,
            cost_usd=vm + fn + store,
        )
        total += row.cost_usd
        rows.append(astuple(row))
    backend.write(rows)
    return total, rows


def _run(capsys, *argv) -> str:
    assert main(["report", *argv]) == 0
    return capsys.readouterr().out


def test_tenants_sum_to_the_ledger_total_to_the_cent(tmp_path, capsys):
    total, _ = _ledger(tmp_path)
    doc = json.loads(_run(capsys, "--data-dir", str(tmp_path), "--format", "json"))
    tenants = doc["tenants"]
    assert set(tenants) == {"acme", "globex", "initech"}
    assert sum(t["requests"] for t in tenants.values()) == 3000
    assert round(sum(t["cost_usd"] for t in tenants.values()), 2) == round(total, 2)
    assert abs(sum(t["cost_usd"] for t in tenants.values()) - total) < 1e-9
    for t in tenants.values():
        parts = (
            t["vm_usd"]
            + t["function_compute_usd"]
            + t["function_requests_usd"]
            + t["store_usd"]
            + t["idle_vm_usd"]
        )
        assert parts == pytest.approx(t["cost_usd"], rel=1e-9, abs=1e-12)
        assert 0 < t["slo_attainment"] < 1 and t["p99_ms"] > t["p50_ms"]


def test_idle_vm_bill_is_split_by_busy_share_and_still_reconciles(tmp_path, capsys):
    total, rows = _ledger(tmp_path)
    busy = sum(r[10] for r in rows)  # vm_cost_usd column
    doc = json.loads(
        _run(
            capsys,
            "--data-dir",
            str(tmp_path),
            "--format",
            "json",
            "--vm-bill-usd",
            str(busy + 1.0),
        )
    )
    assert doc["idle_vm_usd"] == pytest.approx(1.0)
    tenants = doc["tenants"]
    assert sum(t["idle_vm_usd"] for t in tenants.values()) == pytest.approx(1.0)
    assert round(sum(t["cost_usd"] for t in tenants.values()), 2) == round(total + 1.0, 2)
    for t in tenants.values():
        assert t["idle_vm_usd"] == pytest.approx(t["vm_usd"] / busy, rel=1e-9)
    one = json.loads(
        _run(
            capsys,
            "--data-dir",
            str(tmp_path),
            "--format",
            "json",
            "--tenant",
            "acme",
            "--vm-bill-usd",
            str(busy + 1.0),
        )
    )
    assert one["tenants"]["acme"]["idle_vm_usd"] == pytest.approx(tenants["acme"]["idle_vm_usd"])


def test_filters_and_groups(tmp_path, capsys):
    _ledger(tmp_path)
    since = "2026-05-28T00:00:00"  # T0 is 2026-05-28T20:26:40Z; 3000 minutes run ~2 days
    doc = json.loads(
        _run(
            capsys,
            "--data-dir",
            str(tmp_path),
            "--format",
            "json",
            "--tenant",
            "globex",
            "--since",
            since,
            "--until",
            str(T0 + DAY),
            "--by",
            "path,day",
        )
    )
    assert list(doc["tenants"]) == ["globex"]
    groups = doc["groups"]
    assert {g["key"]["path"] for g in groups} == {"vm", "burst"}
    assert {g["key"]["day"] for g in groups} == {"2026-05-28", "2026-05-29"}
    assert sum(g["requests"] for g in groups) == doc["tenants"]["globex"]["requests"]
    assert 400 < doc["tenants"]["globex"]["requests"] < 560  # a third of 1440 minutes
    burst = [g for g in groups if g["key"]["path"] == "burst"]
    assert all(g["vm_usd"] == 0 and g["function_requests_usd"] > 0 for g in burst)


def test_csv_table_html_and_clear_errors(tmp_path, capsys):
    _ledger(tmp_path, n=300)
    text = _run(capsys, "--data-dir", str(tmp_path), "--format", "csv", "--by", "model")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["model"] for r in rows} == {"resnet18", "mlp"} and "cost_usd" in rows[0]
    table = _run(capsys, "--data-dir", str(tmp_path))
    assert "acme" in table and "total $" in table
    out = tmp_path / "r.html"
    _run(capsys, "--data-dir", str(tmp_path), "--format", "html", "--out", str(out))
    page = out.read_text()
    assert "<svg" in page and "globex" in page and "<script" not in page
    assert main(["report", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "no ledger" in capsys.readouterr().err
    assert main(["report", "--data-dir", str(tmp_path), "--since", "yesterday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err
    assert main(["report", "--data-dir", str(tmp_path), "--by", "colour"]) == 2
    assert "cannot group by" in capsys.readouterr().err


def test_odd_amounts_reconcile_to_the_cent_in_every_format(tmp_path, capsys):
    """Thirds of a cent, half cents, sub-micro-dollar rows and a large bill over seven tenants,
    with an idle VM bill split seven ways: the tenants add up to the ledger's own SQL sum plus
    the idle bill, in JSON, CSV (every digit kept) and the table's total line."""
    backend = make_backend(str(tmp_path / "ledger.sqlite"))
    backend.migrate()
    amounts = [0.01 / 3, 0.005, 0.015, 1e-9, 123456789.015, 0.07, 2.675, 1 / 7]
    rows = []
    for i in range(700):
        usd = amounts[i % len(amounts)]
        vm = usd / 3 if i % 2 else 0.0
        rows.append(
            astuple(
                LedgerRow(
                    id=f"r{i}",
                    ts=T0 + i,
                    tenant=f"t{i % 7}",
                    model="resnet18",
                    path="vm" if vm else "burst",
                    status=200,
                    latency_ms=10.0,
                    workers=0 if vm else 2,
                    vm_cost_usd=vm,
                    function_cost_usd=usd - vm,
                    store_cost_usd=0.0,
                    cost_usd=usd,
                )
            )
        )
    backend.write(rows)
    (ledger_sum,) = backend.query("SELECT SUM(cost_usd) FROM requests", ())[0]
    bill = sum(r[10] for r in rows) + 0.01  # one cent of idle VM time over seven tenants
    args = ["--data-dir", str(tmp_path), "--vm-bill-usd", repr(bill)]
    doc = json.loads(_run(capsys, *args, "--format", "json"))
    tenant_sum = sum(t["cost_usd"] for t in doc["tenants"].values())
    assert len(doc["tenants"]) == 7
    assert round(tenant_sum, 2) == round(ledger_sum + 0.01, 2)
    exact = math.fsum(r[13] for r in rows) + 0.01  # cost_usd; SQLite's SUM rounds as it goes
    assert abs(tenant_sum - exact) < 1e-6
    text = _run(capsys, *args, "--format", "csv")
    csv_sum = sum(float(r["cost_usd"]) for r in csv.DictReader(io.StringIO(text)))
    assert round(csv_sum, 2) == round(ledger_sum + 0.01, 2)
    table = _run(capsys, *args)
    shown = float(table.splitlines()[-1].split("$")[1].split()[0])
    assert round(shown, 2) == round(ledger_sum + 0.01, 2)
