"""``GET /admin/reports/tenants/{tenant}`` and ``tidegate report --tenant`` agree: a tenant that
does not exist is a 404 ``{"error"}`` naming the known ones (an open gateway answered 200 with
zeros where the CLI exits 2); a configured tenant without requests yet is 200 with zeros."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from ops.cli import main

from .conftest import serve_app
from .ledger_rows import ledger_rows

BODY = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]}
TENANTS = [
    {"name": "acme", "api_keys": ["ka"]},
    {"name": "idle", "api_keys": ["ki"]},
    {"name": "boss", "api_keys": ["kboss"], "admin": True},
]


def _serve(data, small_repo, model_server, **kw):
    settings = Settings.load(
        None,
        data_dir=data,
        repo=small_repo,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        routing_policy="vm-only",
        **kw,
    )
    return serve_app(create_app(settings))


def _get(url: str, tenant: str, key: str | None = None) -> httpx.Response:
    headers = {"x-api-key": key} if key else {}
    return httpx.get(f"{url}/admin/reports/tenants/{tenant}", headers=headers, timeout=60)


def _cli(data, tenant: str, capsys) -> tuple[int, str]:
    code = main(["report", "--data-dir", str(data), "--tenant", tenant, "--format", "json"])
    return code, capsys.readouterr().err


def test_an_open_gateway_says_404_for_a_tenant_that_does_not_exist(
    model_server, small_repo, tmp_path, capsys
):
    with _serve(tmp_path, small_repo, model_server) as url:
        fresh = _get(url, "default")  # the open gateway's own tenant: no requests yet
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["tenants"]["default"]["requests"] == 0
        assert _cli(tmp_path, "default", capsys)[0] == 0  # the CLI knows it before a request too
        assert httpx.post(url + "/v2/models/mlp/infer", json=BODY, timeout=60).status_code == 200
        ledger_rows(tmp_path, "SELECT id FROM requests", at_least=1)
        r = _get(url, "nosuch")
        assert r.status_code == 404, r.text
        assert r.json() == {"error": r.json()["error"]} and "'nosuch'" in r.json()["error"]
        assert "(tenants: default)" in r.json()["error"]
        assert _get(url, "default").json()["tenants"]["default"]["requests"] == 1
    code, err = _cli(tmp_path, "nosuch", capsys)
    assert code == 2 and "'nosuch'" in err and "default" in err
    assert _cli(tmp_path, "default", capsys)[0] == 0


@pytest.mark.parametrize("admin", ["adm", "kboss"])
def test_with_tenants_an_unknown_one_is_404_and_a_configured_idle_one_zero(
    admin, model_server, small_repo, tmp_path
):
    with _serve(tmp_path, small_repo, model_server, tenants=TENANTS, admin_api_key="adm") as url:
        r = httpx.post(url + "/v2/models/mlp/infer", json=BODY, headers={"x-api-key": "ka"})
        assert r.status_code == 200, r.text
        ledger_rows(tmp_path, "SELECT id FROM requests", at_least=1)
        r = _get(url, "nosuch", admin)
        assert r.status_code == 404, r.text
        assert "(tenants: acme, boss, idle)" in r.json()["error"]
        idle = _get(url, "idle", admin)
        assert idle.status_code == 200 and idle.json()["tenants"]["idle"]["requests"] == 0
        assert _get(url, "acme", admin).json()["tenants"]["acme"]["requests"] == 1
        # a tenant's own key learns nothing of others: 403 whether or not they exist
        assert _get(url, "nosuch", "ka").status_code == 403
        assert _get(url, "idle", "ka").status_code == 403
        assert _get(url, "idle", "ki").json()["tenants"]["idle"]["requests"] == 0
