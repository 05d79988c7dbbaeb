"""The access line of a tenant reading its own report names that tenant (it said ``tenant=-``),
and one reading another tenant's names the caller, refused."""

from __future__ import annotations

import logging

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("report-access"),
        repo=small_repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        tenants=[{"name": "acme", "api_keys": ["ka"]}, {"name": "beta", "api_keys": ["kb"]}],
        admin_api_key="adm",
        access_log="json",
    )
    with serve_app(create_app(settings)) as url:
        yield url


def _line(caplog, path, key):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tidegate.access"):
        status = httpx.get(path, headers={"x-api-key": key}, timeout=30).status_code
    lines = [r.getMessage() for r in caplog.records if r.name == "tidegate.access"]
    assert len(lines) == 1
    return status, lines[0]


def test_a_report_read_is_logged_under_the_tenant_that_asked(gateway, caplog):
    status, line = _line(caplog, gateway + "/admin/reports/tenants/acme", "ka")
    assert status == 200 and '"tenant":"acme"' in line
    status, line = _line(caplog, gateway + "/admin/reports/tenants/acme", "kb")
    assert status == 403 and '"tenant":"beta"' in line
    status, line = _line(caplog, gateway + "/admin/reports/tenants/acme", "adm")
    assert status == 200 and '"tenant":"-"' in line  # the admin key is no tenant
