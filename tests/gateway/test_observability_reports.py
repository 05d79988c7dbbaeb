"""``GET /admin/reports/tenants/{tenant}`` on a live gateway: who may read what, its errors as
``{"error"}``, the CLI's query forms, and the same numbers as ``tidegate report --tenant T
--format json`` on the same ledger."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from ops.cli import main

from .ledger_rows import reporting_gateway

TENANTS = [
    {"name": "acme", "api_keys": ["ka"], "slo_ms": 5000},
    {"name": "globex", "api_keys": ["kb"], "slo_ms": 0.001},
    {"name": "idle", "api_keys": ["ki"], "slo_ms": 300},
]


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    data = tmp_path_factory.mktemp("obs-reports")
    with reporting_gateway(model_server, small_repo, data, TENANTS, {"ka": 4, "kb": 3}) as url:
        yield url, data


def _get(url: str, path: str, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(url + path, headers=headers, timeout=60)


def test_who_may_read_which_report(gateway):
    url, _ = gateway
    for key in ("adm", "ka"):
        assert _get(url, "/admin/reports/tenants/acme", key).status_code == 200
    for path, key, code in (
        ("/admin/reports/tenants/acme", "kb", 403),  # another tenant's
        ("/admin/reports/tenants/acme", None, 401),
        ("/admin/reports/tenants/acme", "wrong", 401),
        ("/admin/reports/tenants/nobody", "adm", 404),
        ("/admin/reports/tenants/nobody", "ka", 403),  # a tenant learns nothing of others
        ("/admin/reports/tenants/acme?since=yesterday", "ka", 400),
        ("/admin/reports/tenants/acme?until=nan", "ka", 400),
        ("/admin/reports/tenants/acme?by=colour", "ka", 400),
        ("/admin/reports/tenants/acme?since=2026-01-02&until=2026-01-01", "ka", 400),
        ("/admin/reports/tenants/acme?since=1780000000&until=1780000000", "ka", 400),
    ):
        resp = _get(url, path, key)
        assert resp.status_code == code, (path, key, resp.text)
        assert set(resp.json()) >= {"error"} and resp.json()["error"], (path, resp.text)


def test_a_tenant_with_no_rows_reads_zero(gateway):
    url, _ = gateway
    doc = _get(url, "/admin/reports/tenants/idle", "ki").json()
    assert doc["tenants"]["idle"]["requests"] == 0 and doc["tenants"]["idle"]["cost_usd"] == 0


@pytest.mark.parametrize(
    "query,argv",
    [
        ("", []),
        ("?by=model,path,day", ["--by", "model,path,day"]),
        ("?by=path,path", ["--by", "path"]),
        ("?since=2020-01-01T00:00:00%2B02:00", ["--since", "2020-01-01T00:00:00+02:00"]),
        ("?until=4102444800&by=day", ["--until", "4102444800", "--by", "day"]),
    ],
)
def test_the_same_numbers_as_the_cli(gateway, tmp_path, capsys, query, argv):
    url, data = gateway
    config = tmp_path / "tenants.toml"
    config.write_text(
        "".join(f'[[tenants]]\nname = "{t["name"]}"\nslo_ms = {t["slo_ms"]}\n' for t in TENANTS)
    )
    for tenant, key in (("acme", "ka"), ("globex", "adm")):
        served = _get(url, f"/admin/reports/tenants/{tenant}{query}", key)
        assert served.status_code == 200, served.text
        cli = ["report", "--data-dir", str(Path(data)), "--tenant", tenant, "--format", "json"]
        assert main([*cli, "--config", str(config), *argv]) == 0
        printed = json.loads(capsys.readouterr().out)
        doc = served.json()
        assert doc["tenants"] == printed["tenants"], (tenant, query)
        assert doc["groups"] == printed["groups"]
        assert doc["tenants"][tenant]["requests"] == {"acme": 4, "globex": 3}[tenant]
    assert np.isclose(
        _get(url, "/admin/reports/tenants/globex", "kb").json()["tenants"]["globex"][
            "slo_attainment"
        ],
        0.0,
    )  # its 1 us SLO: the endpoint reads the tenant's own SLO, as --config gives the CLI
