"""Audit 20: ``tidegate report --vm-bill-usd`` over a window the VMs served nothing in.

Before, a window of burst requests only (a night on functions while a VM idled) split the idle
bill by VM busy time, of which there was none: no tenant carried it, so the tenants summed to the
ledger alone while the footer said "ledger + idle VM" (a $10 bill vanished from the total). And a
one-tenant report's footer added the whole fleet's idle bill to that tenant's ledger total.
"""

from __future__ import annotations

import json
from dataclasses import astuple

import pytest

from gateway.ledger import LedgerRow, make_backend
from ops.cli import main

T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z


def _ledger(tmp_path, rows: list[tuple[float, str, str, float]]) -> None:
    """rows of (ts, tenant, path, cost)."""
    backend = make_backend(str(tmp_path / "ledger.sqlite"))
    backend.migrate()
    out = []
    for i, (ts, tenant, path, cost) in enumerate(rows):
        vm = path == "vm"
        row = LedgerRow(
            id=f"r{i}",
            ts=ts,
            tenant=tenant,
            model="mlp",
            path=path,
            status=200,
            latency_ms=10.0,
            workers=0 if vm else 2,
            vm_cost_usd=cost if vm else 0.0,
            function_cost_usd=0.0 if vm else cost,
            cost_usd=cost,
        )
        out.append(astuple(row))
    backend.write(out)


def _run(capsys, *argv) -> str:
    assert main(["report", *argv]) == 0
    return capsys.readouterr().out


@pytest.fixture
def night(tmp_path):
    """VM requests by day, burst requests alone between T0 + 100 and T0 + 200 (a: 3, b: 1)."""
    _ledger(
        tmp_path,
        [(T0, "a", "vm", 1.0), (T0 + 1, "b", "vm", 1.0)]
        + [(T0 + 100 + i, "a", "burst", 0.25) for i in range(3)]
        + [(T0 + 150, "b", "burst", 0.25)]
        + [(T0 + 300, "a", "vm", 1.0)],
    )
    return ["--data-dir", str(tmp_path), "--since", str(T0 + 100), "--until", str(T0 + 200)]


def test_idle_bill_of_a_window_without_vm_time_is_split_by_requests(night, capsys):
    doc = json.loads(_run(capsys, *night, "--vm-bill-usd", "10", "--format", "json"))
    a, b = doc["tenants"]["a"], doc["tenants"]["b"]
    assert doc["ledger_total_usd"] == pytest.approx(1.0) and doc["idle_vm_usd"] == 10.0
    assert (a["idle_vm_usd"], b["idle_vm_usd"]) == (pytest.approx(7.5), pytest.approx(2.5))
    assert doc["total_usd"] == pytest.approx(doc["ledger_total_usd"] + doc["idle_vm_usd"])
    assert "share of requests" in doc["idle_vm_note"]
    # the groups of a tenant carry its share, by the same rule
    grouped = json.loads(
        _run(capsys, *night, "--vm-bill-usd", "10", "--format", "json", "--by", "path")
    )
    assert sum(g["idle_vm_usd"] for g in grouped["groups"]) == pytest.approx(10.0)
    # one tenant alone: its share of the whole window's requests (1 of 4), not all of it
    one = json.loads(
        _run(capsys, *night, "--vm-bill-usd", "10", "--format", "json", "--tenant", "b")
    )
    assert one["tenants"]["b"]["idle_vm_usd"] == pytest.approx(2.5)


def test_table_footer_adds_up(night, capsys):
    lines = _run(capsys, *night, "--vm-bill-usd", "10").splitlines()
    assert "total $11.000000 over 2 tenants (ledger $1.000000 + idle VM $10.000000)" in lines
    assert any(ln.startswith("note: ") and "share of requests" in ln for ln in lines)
    one = _run(capsys, *night, "--vm-bill-usd", "10", "--tenant", "b").splitlines()
    footer = next(ln for ln in one if ln.startswith("total "))
    assert footer == (
        "total $2.750000 for b (its ledger $0.250000 + its share $2.500000 "
        "of the fleet's idle VM $10.000000)"
    )


def test_busy_share_rule_unchanged_where_vms_served(tmp_path, capsys):
    _ledger(tmp_path, [(T0, "a", "vm", 3.0), (T0 + 1, "b", "vm", 1.0), (T0 + 2, "b", "burst", 9)])
    doc = json.loads(
        _run(capsys, "--data-dir", str(tmp_path), "--vm-bill-usd", "10", "--format", "json")
    )
    assert doc["tenants"]["a"]["idle_vm_usd"] == pytest.approx(4.5)
    assert doc["tenants"]["b"]["idle_vm_usd"] == pytest.approx(1.5)
    assert "idle_vm_note" not in doc


def test_an_empty_window_reports_the_bill_beside_a_zero_total(night, capsys):
    argv = night[:2] + ["--since", str(T0 + 1000), "--vm-bill-usd", "10"]
    doc = json.loads(_run(capsys, *argv, "--format", "json"))
    assert doc["tenants"] == {} and doc["total_usd"] == 0.0 and doc["idle_vm_usd"] == 10.0
    footer = _run(capsys, *argv).splitlines()[-1]
    assert footer == "total $0.000000 over 0 tenants (ledger $0.000000 + idle VM $10.000000)"


def test_time_forms_an_operator_pastes(night, capsys):
    """``--since 20260528`` is that day (it read as epoch seconds: 1970-08-23, every row in);
    epoch milliseconds are refused (they read as the year 58000: an empty report); a value
    with a trailing newline (a shell variable) is read."""
    data = night[:2]
    day = json.loads(_run(capsys, *data, "--since", "20260529", "--format", "json"))
    assert day["since_ts"] == T0 - 20 * 3600 - 26 * 60 - 40 + 86400  # 2026-05-29T00:00Z
    assert day["tenants"] == {}
    whole = json.loads(_run(capsys, *data, "--since", "20260528\n", "--format", "json"))
    assert sum(t["requests"] for t in whole["tenants"].values()) == 7
    assert main(["report", *data, "--since", str(int(T0 * 1000))]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "milliseconds" in err[0]
    assert main(["report", *data, "--until", "20261399"]) != 0
    assert "YYYYMMDD" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ops:s3cr3t-pw@127.0.0.1:1/ledger",  # nothing listens on port 1
        "postgresql://ops:s3cr3t%40pw@127.0.0.1:1/ledger",
        "postgresql://ops:s3cr3t-pw@[::1:1/ledger",  # unparsable: psycopg quotes it whole
    ],
)
def test_a_ledger_urls_password_is_never_printed(url, capsys):
    assert main(["report", "--ledger", url]) != 0
    err = capsys.readouterr().err
    assert "not a readable Tidegate ledger" in err and "ops:***@" in err
    assert "s3cr3t" not in err


def test_an_unreadable_ledger_url_in_a_config_or_to_prune_stays_secret(tmp_path, capsys):
    """serve's config and ``tidegate ledger prune`` printed psycopg's message, which quotes a
    URL libpq cannot read whole (a traceback, for prune)."""
    from gateway.settings import Settings

    url = "postgresql://ops:s3cr3t-pw@[::1:1/ledger"
    with pytest.raises(ValueError) as refused:
        Settings.load(None, data_dir=tmp_path, ledger={"url": url})
    assert "not a PostgreSQL URL libpq reads" in str(refused.value)
    assert "s3cr3t" not in str(refused.value)
    assert main(["ledger", "prune", "--before", "2020-01-01", "--ledger", url]) != 0
    err = capsys.readouterr().err
    assert "not a readable Tidegate ledger" in err and "s3cr3t" not in err


def test_an_unknown_tenant_without_config_names_only_the_ledgers_tenants(night, tmp_path, capsys):
    """Without --config the assumed ``default`` tenant was listed among the known ones of a
    gateway that has tenants (a, b here) and no hint said --config knows the rest."""
    assert main(["report", "--data-dir", str(tmp_path), "--tenant", "gamma"]) != 0
    err = capsys.readouterr().err
    assert "unknown tenant 'gamma'" in err and "(tenants: a, b)" in err
    assert "default" not in err and "--config" in err
    config = tmp_path / "serve.toml"
    config.write_text('[[tenants]]\nname = "gamma"\napi_keys = ["k-gamma-0123456789"]\n')
    out = _run(capsys, "--data-dir", str(tmp_path), "--tenant", "gamma", "--config", str(config))
    assert "gamma" in out  # configured, no rows yet: a zero report, not an error
