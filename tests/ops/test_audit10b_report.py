"""``tidegate report`` as an operator reads it: many tiny costs over seven tenants reconcile to
the cent in every grouping (SQLite and PostgreSQL), every time form for --since/--until, a
repeated --by, an empty ledger, idle VM time split by a known busy share, a self-contained
HTML page."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import astuple
from decimal import Decimal

import pytest

from gateway.ledger import LedgerRow, make_backend
from ops.cli import main
from tests.support.postgres import postgres_server, postgres_url  # noqa: F401 - fixtures

T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z
TENANTS = [f"t{i}" for i in range(7)]
TINY = 0.0000013


def _tiny_rows(n: int) -> list[tuple]:
    """n rows of $0.0000013 over 7 tenants, two models, both paths, three days."""
    rows = []
    for i in range(n):
        vm = i % 3 != 0
        rows.append(
            astuple(
                LedgerRow(
                    id=f"r{i}",
                    ts=T0 + (i % 3) * 86400.0 + i * 1e-3,
                    tenant=TENANTS[i % 7],
                    model="mlp" if i % 5 else "resnet18",
                    path="vm" if vm else "burst",
                    status=200,
                    latency_ms=10.0,
                    workers=0 if vm else 2,
                    vm_cost_usd=TINY if vm else 0.0,
                    function_cost_usd=0.0 if vm else TINY,
                    store_cost_usd=0.0,
                    cost_usd=TINY,
                )
            )
        )
    return rows


def _report(capsys, *argv) -> dict:
    assert main(["report", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def _cents(x) -> Decimal:
    return (x if isinstance(x, Decimal) else Decimal(repr(x))).quantize(Decimal("0.01"))


def _assert_reconciles(doc: dict, total: Decimal, n: int) -> None:
    tenants = doc["tenants"]
    assert sum(t["requests"] for t in tenants.values()) == n
    # the sum over tenants, added exactly (decimal), is the ledger's total to the cent
    assert _cents(sum(Decimal(repr(t["cost_usd"])) for t in tenants.values())) == _cents(total)
    assert _cents(doc["ledger_total_usd"]) == _cents(total)
    assert abs(Decimal(repr(doc["total_usd"])) - total) < Decimal("1e-9")
    for name, t in tenants.items():  # each tenant's groups add up to it
        groups = [g for g in doc["groups"] if g["key"]["tenant"] == name]
        if groups:
            g_sum = sum(Decimal(repr(g["cost_usd"])) for g in groups)
            assert abs(g_sum - Decimal(repr(t["cost_usd"]))) < Decimal("1e-12")
            assert sum(g["requests"] for g in groups) == t["requests"]


GROUPINGS = [
    ",".join(c) for k in range(4) for c in itertools.combinations(("model", "path", "day"), k)
] + ["day,path,model"]


def test_a_hundred_thousand_tiny_costs_reconcile_in_every_grouping(tmp_path, capsys):
    n = 100_000
    backend = make_backend(str(tmp_path / "ledger.sqlite"))
    backend.migrate()
    backend.write(_tiny_rows(n))
    total = Decimal("0.0000013") * n  # $0.13 exactly
    for by in GROUPINGS:
        doc = _report(capsys, "--data-dir", str(tmp_path), "--by", by)
        _assert_reconciles(doc, total, n)
        if by:
            assert {tuple(g["key"]) for g in doc["groups"]} == {("tenant", *by.split(","))}


def test_postgres_ledger_reconciles_as_sqlite_does(tmp_path, capsys, postgres_url):  # noqa: F811
    n = 20_000
    backend = make_backend(postgres_url)
    backend.migrate()
    backend.write(_tiny_rows(n))
    lite = make_backend(str(tmp_path / "ledger.sqlite"))
    lite.migrate()
    lite.write(_tiny_rows(n))
    total = Decimal("0.0000013") * n
    for by in ("", "model,path,day"):
        pg = _report(capsys, "--ledger", postgres_url, "--by", by)
        _assert_reconciles(pg, total, n)
        assert pg == _report(capsys, "--data-dir", str(tmp_path), "--by", by)


def test_a_repeated_grouping_is_the_grouping_once(tmp_path, capsys):
    backend = make_backend(str(tmp_path / "ledger.sqlite"))
    backend.migrate()
    backend.write(_tiny_rows(700))
    once = _report(capsys, "--data-dir", str(tmp_path), "--by", "model,path")
    assert _report(capsys, "--data-dir", str(tmp_path), "--by", "model,model,path,model") == once
    assert (
        main(["report", "--data-dir", str(tmp_path), "--by", "path,path", "--format", "csv"]) == 0
    )
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert header[:2] == ["tenant", "path"] and header.count("path") == 1


def test_every_time_form_and_the_windows_that_cannot_be(tmp_path, capsys):
    backend = make_backend(str(tmp_path / "ledger.sqlite"))
    backend.migrate()
    backend.write(_tiny_rows(300))  # 100 rows on each of three days from T0
    d = str(tmp_path)
    everything = _report(capsys, "--data-dir", d)
    first_day = _report(capsys, "--data-dir", d, "--until", str(T0 + 86400.0))
    assert sum(t["requests"] for t in first_day["tenants"].values()) == 100
    same = [
        ("--since", str(T0), "--until", str(T0 + 86400.0)),  # epoch seconds
        ("--since", "2026-05-28T20:26:40Z", "--until", "2026-05-29T20:26:40+00:00"),
        ("--since", "2026-05-28T22:26:40+02:00", "--until", "2026-05-29T15:26:40-05:00"),
        ("--since", "2026-05-28", "--until", "2026-05-29T20:26:40"),  # a date: its midnight UTC
    ]
    for window in same:
        doc = _report(capsys, "--data-dir", d, *window)
        assert doc["tenants"] == first_day["tenants"], window
    assert _report(capsys, "--data-dir", d, "--since", "2026-05-28") == everything | {
        "since_ts": 1_779_926_400.0
    }
    for window in (
        ("--since", str(T0), "--until", str(T0)),  # the same instant: an empty window
        ("--since", "2026-05-29", "--until", "2026-05-28"),  # backwards
        ("--since", "2026-05-28T20:26:40Z", "--until", str(T0)),  # the same, written two ways
        ("--since", "last tuesday"),
        ("--until", "nan"),
    ):
        assert main(["report", "--data-dir", d, *window]) == 2, window
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tidegate report: error:"), (window, err)


def test_a_window_with_no_rows_and_an_empty_ledger_report_zero(tmp_path, capsys):
    backend = make_backend(str(tmp_path / "ledger.sqlite"))
    backend.migrate()
    empty = _report(capsys, "--data-dir", str(tmp_path), "--by", "model,path,day")
    assert empty["tenants"] == {} and empty["total_usd"] == 0 and empty["groups"] == []
    for fmt in ("table", "csv", "html"):
        assert main(["report", "--data-dir", str(tmp_path), "--format", fmt]) == 0
        assert capsys.readouterr().out.strip()
    backend.write(_tiny_rows(70))
    late = _report(capsys, "--data-dir", str(tmp_path), "--tenant", "t3", "--since", "2030-01-01")
    assert late["tenants"]["t3"]["requests"] == 0 and late["tenants"]["t3"]["cost_usd"] == 0


def test_idle_vm_time_follows_the_busy_share_rule(tmp_path, capsys):
    """Two tenants, VM busy $3 and $1: a $10 bill leaves $6 idle, split 3:1."""
    backend = make_backend(str(tmp_path / "ledger.sqlite"))
    backend.migrate()
    rows = []
    for i, (tenant, vm, fn) in enumerate([("a", 1.0, 0.0)] * 3 + [("b", 1.0, 0.0), ("b", 0, 2.5)]):
        rows.append(
            astuple(
                LedgerRow(
                    id=f"r{i}",
                    ts=T0 + i,
                    tenant=tenant,
                    model="mlp",
                    path="vm" if vm else "burst",
                    status=200,
                    latency_ms=5.0,
                    workers=0 if vm else 2,
                    vm_cost_usd=vm,
                    function_cost_usd=fn,
                    cost_usd=vm + fn,
                )
            )
        )
    backend.write(rows)
    doc = _report(capsys, "--data-dir", str(tmp_path), "--vm-bill-usd", "10")
    a, b = doc["tenants"]["a"], doc["tenants"]["b"]
    assert doc["idle_vm_usd"] == pytest.approx(6.0)
    assert (a["idle_vm_usd"], b["idle_vm_usd"]) == (pytest.approx(4.5), pytest.approx(1.5))
    assert (a["cost_usd"], b["cost_usd"]) == (pytest.approx(7.5), pytest.approx(5.0))
    assert a["cost_usd"] + b["cost_usd"] == pytest.approx(10.0 + 2.5)  # the bill + functions
    one = _report(capsys, "--data-dir", str(tmp_path), "--vm-bill-usd", "10", "--tenant", "b")
    assert one["tenants"]["b"]["idle_vm_usd"] == pytest.approx(1.5)  # the same rule alone


def test_html_is_self_contained_with_charts(tmp_path, capsys):
    backend = make_backend(str(tmp_path / "ledger.sqlite"))
    backend.migrate()
    backend.write(_tiny_rows(700))
    assert main(["report", "--data-dir", str(tmp_path), "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert page.count("<svg") >= 2  # cost by tenant, and requests / SLO attainment
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched
    assert "<script src" not in page and "@import" not in page
    for tenant in TENANTS:
        assert tenant in page
