"""Session 22 (ops22): `tidegate report` on a ledger of many tenants, across midnight UTC: the
tenants add up to the ledger's total to the cent in every format and grouping, and a file
written with --out ends with a line end as stdout does (table, json and html did not)."""

from __future__ import annotations

import csv
import io
import json
import random

import pytest

from gateway.ledger import make_backend
from gateway.ledger.row import row_values
from ops.cli import main

MIDNIGHT = 1_764_547_200.0  # 2025-12-01T00:00:00Z


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    """3,000 rows of 25 tenants, 3 models, vm/burst/refused, from 22:00 to 02:00 UTC."""
    data = tmp_path_factory.mktemp("ledger")
    backend = make_backend(str(data / "ledger.sqlite"))
    backend.migrate()
    rng, rows, total = random.Random(5), [], 0.0
    for i in range(3000):
        path = rng.choice(["vm", "vm", "burst", "reject"])
        vm = rng.uniform(0, 0.031) if path == "vm" else 0.0
        fn = rng.uniform(0, 0.0217) if path == "burst" else 0.0
        store = rng.uniform(0, 0.0013) if path == "burst" else 0.0
        status = 200 if path != "reject" else 429
        ts = MIDNIGHT - 7200 + rng.uniform(0, 14400)
        tenant, model = f"t{rng.randrange(25):02d}", rng.choice(["resnet18", "mlp", "bert"])
        rows.append(
            row_values(f"r{i}", ts, tenant, model, path, status, rng.uniform(5, 600), 1,
                       2 if path == "burst" else 0, 0, vm, fn, store, vm + fn + store)
        )  # fmt: skip
        total += vm + fn + store
    backend.write(rows)
    return data, total


def _report(capsys, data, *argv) -> str:
    assert main(["report", "--data-dir", str(data), *argv]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("by", ["", "model,path,day", "day", "path"])
def test_tenants_add_up_to_the_ledger_to_the_cent_in_every_form(ledger, capsys, by):
    data, total = ledger
    extra = ["--by", by] if by else []
    doc = json.loads(_report(capsys, data, "--format", "json", *extra))
    assert round(sum(t["cost_usd"] for t in doc["tenants"].values()), 2) == round(total, 2)
    assert round(doc["total_usd"], 2) == round(total, 2) and len(doc["tenants"]) == 25
    if by:
        assert round(sum(g["cost_usd"] for g in doc["groups"]), 2) == round(total, 2)
    lines = list(csv.DictReader(io.StringIO(_report(capsys, data, "--format", "csv", *extra))))
    assert round(sum(float(r["cost_usd"]) for r in lines), 2) == round(total, 2)
    if "day" in by:
        assert {r["day"] for r in lines} == {"2025-11-30", "2025-12-01"}
    table = _report(capsys, data, *extra)
    assert f"total ${total:.6f} over 25 tenants" in table


def test_a_window_across_midnight_counts_both_days(ledger, capsys):
    data, _ = ledger
    since, until = "2025-11-30T23:30:00+00:00", "2025-12-01T01:30:00+01:00"  # 23:30 to 00:30 Z
    doc = json.loads(_report(capsys, data, "--format", "json", "--since", since, "--by", "day"))
    days = {g["key"]["day"] for g in doc["groups"]}
    assert days == {"2025-11-30", "2025-12-01"}
    two = json.loads(_report(capsys, data, "--format", "json", "--since", since, "--until", until))
    assert 0 < sum(t["requests"] for t in two["tenants"].values()) < 3000
    assert main(["report", "--data-dir", str(data), "--since", until, "--until", since]) == 2
    assert "must be before" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "html"])
def test_a_report_file_ends_with_a_line_end(ledger, tmp_path, fmt):
    data, _ = ledger
    out = tmp_path / f"r.{fmt}"
    assert main(["report", "--data-dir", str(data), "--format", fmt, "--out", str(out)]) == 0
    assert out.read_text().endswith("\n") and not out.read_text().endswith("\n\n")
