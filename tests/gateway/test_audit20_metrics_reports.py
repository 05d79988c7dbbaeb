"""Audit 20: ``GET /admin/reports/tenants/{tenant}`` as an ops person calls it with curl.

Before: ``?format=csv`` (or ``html``, or a typo) answered JSON as if the format were taken, and
``?since=2026-12-01T07:36:00+00:00`` typed into a URL (its ``+`` read as a space) was a 400
"neither epoch seconds nor an ISO 8601 date/time".
"""

from __future__ import annotations

import csv
import io
import math

import httpx
import pytest


from .ledger_rows import reporting_gateway

TENANTS = [{"name": "acme", "api_keys": ["ka"]}, {"name": "beta", "api_keys": ["kb"]}]


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    data = tmp_path_factory.mktemp("audit20-reports")
    with reporting_gateway(model_server, small_repo, data, TENANTS, {"ka": 3, "kb": 2}) as url:
        yield url


def _get(url: str, path: str, key: str = "adm") -> httpx.Response:
    return httpx.get(url + path, headers={"x-api-key": key}, timeout=60)


def test_format_csv_html_and_table(gateway):
    doc = _get(gateway, "/admin/reports/tenants/acme", "ka").json()
    cost = doc["tenants"]["acme"]["cost_usd"]
    assert doc["tenants"]["acme"]["requests"] == 3 and cost > 0

    as_csv = _get(gateway, "/admin/reports/tenants/acme?format=csv&by=path", "ka")
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(r["tenant"], r["path"], r["requests"]) for r in rows] == [("acme", "vm", "3")]
    assert math.isclose(float(rows[0]["cost_usd"]), cost, rel_tol=0, abs_tol=1e-12)

    page = _get(gateway, "/admin/reports/tenants/acme?format=html", "ka")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count("<svg") == 2 and "<script" not in page.text and "src=" not in page.text
    assert "acme" in page.text and "beta" not in page.text  # its own usage only

    table = _get(gateway, "/admin/reports/tenants/acme?format=table", "ka")
    assert table.headers["content-type"].startswith("text/plain")
    assert table.text.splitlines()[0].split()[:2] == ["tenant", "requests"]
    assert f"${cost:.6f}" in table.text


def test_unknown_format_is_a_400_after_the_key_is_checked(gateway):
    bad = _get(gateway, "/admin/reports/tenants/acme?format=xlsx", "ka")
    assert bad.status_code == 400
    assert "format" in bad.json()["error"] and "csv" in bad.json()["error"]
    # another tenant's report stays a 403 whatever the format says
    assert _get(gateway, "/admin/reports/tenants/beta?format=xlsx", "ka").status_code == 403
    assert _get(gateway, "/admin/reports/tenants/acme?format=xlsx", "nope").status_code == 401


def test_a_utc_offset_typed_into_the_url(gateway):
    """curl 'URL?since=...+01:00': the query's + arrives as a space."""
    encoded = _get(gateway, "/admin/reports/tenants/acme?since=2026-01-01T01:00:00%2B01:00")
    typed = _get(gateway, "/admin/reports/tenants/acme?since=2026-01-01T01:00:00+01:00")
    assert encoded.status_code == 200, encoded.text
    assert typed.status_code == 200, typed.text
    assert typed.json()["since_ts"] == encoded.json()["since_ts"] == 1767225600.0
    assert typed.json()["tenants"]["acme"]["requests"] == 3
    # a date and time with a space between them still reads as UTC, not as an offset
    spaced = _get(gateway, "/admin/reports/tenants/acme?since=2026-01-01+00:00")
    assert spaced.status_code == 200, spaced.text
    assert spaced.json()["since_ts"] == 1767225600.0
