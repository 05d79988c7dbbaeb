"""The tenant report summed in SQL (and latencies read as numpy arrays, in time slices) gives
every figure the row-by-row report gave: counts, SLO attainment and percentiles exactly, dollars
to ~1e-12 and to the cent, over several tenants, models, paths and days, windows and groupings."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal

import pytest

from gateway.ledger import make_backend
from gateway.ledger import report_queries as rq
from gateway.reports import GROUP_KEYS, ReportFilter, build_report
from ops.bench.report_scale import T0, generate, old_report, slo_ms
from ops.report import open_ledger

EXACT = ("requests", "answered", "slo_attainment", "p50_ms", "p99_ms")
DOLLARS = ("vm_usd", "idle_vm_usd", "function_compute_usd", "function_requests_usd")
DOLLARS += ("store_usd", "cost_usd")


def _cents(x: float) -> Decimal:
    return Decimal(repr(x)).quantize(Decimal("0.01"))


def _same(old: dict, new: dict) -> None:
    assert set(old) == set(new)
    for name in EXACT:
        assert new[name] == old[name], name
    for name in DOLLARS:
        assert new[name] == pytest.approx(old[name], rel=1e-12, abs=1e-15), name
        assert _cents(new[name]) == _cents(old[name]), name


def _assert_equal(old_doc: dict, new_doc: dict) -> None:
    assert new_doc["ledger_total_usd"] == pytest.approx(old_doc["ledger_total_usd"], rel=1e-12)
    assert _cents(new_doc["ledger_total_usd"]) == _cents(old_doc["ledger_total_usd"])
    assert _cents(new_doc["total_usd"]) == _cents(old_doc["total_usd"])
    assert new_doc["idle_vm_usd"] == pytest.approx(old_doc["idle_vm_usd"], rel=1e-12)
    assert list(new_doc["tenants"]) == list(old_doc["tenants"])
    for name, usage in old_doc["tenants"].items():
        _same(usage, new_doc["tenants"][name])
    assert [g["key"] for g in new_doc["groups"]] == [g["key"] for g in old_doc["groups"]]
    for old, new in zip(old_doc["groups"], new_doc["groups"], strict=True):
        _same(old, new)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "ledger.sqlite"
    generate(path, 12_000, seed=3, days=4)
    return open_ledger(None, str(path))


GROUPINGS = [c for k in range(4) for c in itertools.combinations(GROUP_KEYS, k)]


@pytest.mark.parametrize("by", GROUPINGS, ids=lambda b: ",".join(b) or "none")
def test_every_figure_is_the_row_by_row_reports(ledger, monkeypatch, by):
    monkeypatch.setattr(rq, "SLICE_ROWS", 997)  # many latency slices, not one
    for filt, bill in [
        (ReportFilter(None, None, None, by), None),
        (ReportFilter(None, None, None, by), 40.0),
        (ReportFilter("t2", None, None, by), 40.0),
        (ReportFilter(None, T0 + 86400 * 0.7, T0 + 86400 * 2.9, by), 7.5),
        (ReportFilter("t4", T0 + 86400 * 1.5, None, by), None),
    ]:
        old = old_report(ledger, filt, slo_ms, vm_bill_usd=bill).as_dict()
        new = build_report(ledger, filt, slo_ms, vm_bill_usd=bill).as_dict()
        _assert_equal(old, new)
        assert sum(t["requests"] for t in new["tenants"].values()) > 0


def test_an_empty_window_and_an_unknown_tenant_report_zero_as_before(ledger):
    for filt in [ReportFilter(None, T0 - 10, T0 - 5), ReportFilter("nobody", None, None)]:
        old = old_report(ledger, filt, slo_ms, vm_bill_usd=3.0).as_dict()
        assert build_report(ledger, filt, slo_ms, vm_bill_usd=3.0).as_dict() == old


def test_many_small_costs_sum_to_the_same_cents_as_the_python_sum(tmp_path):
    """200k costs of 1e-9..3e-6 dollars (and one large): the SQL sums (whole microdollars plus
    the rest) give the cents math.fsum gives, and the tenants add up to the ledger."""
    backend = make_backend(str(tmp_path / "ledger.sqlite"))
    backend.migrate()
    rows, costs = [], []
    for i in range(200_000):
        usd = 1e-9 + (i * 7919 % 3001) * 1e-9 if i else 12345.675
        costs.append(usd)
        rows.append(
            (
                f"r{i}",
                T0 + i,
                f"t{i % 5}",
                "mlp",
                "vm",
                200,
                10.0,
                1,
                0,
                0,
                usd,
                0.0,
                0.0,
                usd,
                0,
                "",
                "",
            )
        )
    backend.write(rows)
    query = open_ledger(None, str(tmp_path / "ledger.sqlite"))
    filt = ReportFilter(None, None, None, ("day",))
    new = build_report(query, filt, slo_ms).as_dict()
    old = old_report(query, filt, slo_ms).as_dict()
    _assert_equal(old, new)
    exact = math.fsum(costs)
    assert new["ledger_total_usd"] == pytest.approx(exact, rel=1e-15)
    tenant_sum = sum(Decimal(repr(t["cost_usd"])) for t in new["tenants"].values())
    assert tenant_sum.quantize(Decimal("0.01")) == _cents(exact)
