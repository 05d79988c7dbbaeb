"""ops23: ``GET /admin/reports/tenants/{tenant}`` as an operator calls it, on a live gateway.

Before, a misspelt query parameter (``?sinse=``, ``?fromat=csv``) was ignored: 200 with the
report of the whole ledger in JSON, as if the window or format had been applied. Now it is a
400 naming the parameter and what it may have meant. Tenant names that need escaping in a URL
(a comma, quotes, non-ASCII, a slash) read their own report: a slash one was a 404 (the route
took one path segment)."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from .ledger_rows import reporting_gateway

TENANTS = [
    {"name": "acme", "api_keys": ["ka"]},
    {"name": 'O\'Brien, "Ünï" & <Co>', "api_keys": ["kodd"]},
    {"name": "boss", "api_keys": ["kboss"], "admin": True},
    {"name": "team/blue", "api_keys": ["kslash"]},
]


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    data = tmp_path_factory.mktemp("ops23-report")
    with reporting_gateway(
        model_server, small_repo, data, TENANTS, {"ka": 2, "kodd": 3, "kslash": 1}
    ) as url:
        yield url


def _get(url: str, tenant: str, key: str, query: str = "") -> httpx.Response:
    path = f"{url}/admin/reports/tenants/{quote(tenant, safe='')}{query}"
    return httpx.get(path, headers={"x-api-key": key}, timeout=60)


@pytest.mark.parametrize(
    "query, named, hint",
    [
        ("?sinse=2020-01-01", "sinse", "since"),
        ("?fromat=csv", "fromat", "format"),
        ("?Since=2020-01-01", "Since", "since"),
        ("?tenant=boss", "tenant", None),
    ],
)
def test_a_misspelt_query_parameter_is_a_400_naming_it(gateway, query, named, hint):
    for key in ("ka", "adm"):
        r = _get(gateway, "acme", key, query)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert f"unknown query parameter {named!r}" in error
        assert "since, until, by, format" in error
        if hint:
            assert f"did you mean {hint!r}" in error


def test_the_right_parameters_still_answer(gateway):
    r = _get(gateway, "acme", "ka", "?since=2020-01-01T00:00:00%2B05:30&by=model,path&format=csv")
    assert r.status_code == 200, r.text
    assert r.text.startswith("tenant,")


def test_another_tenants_key_is_refused_before_the_parameters_are_judged(gateway):
    assert _get(gateway, "boss", "ka", "?sinse=x").status_code == 403
    assert _get(gateway, "acme", "nope", "?sinse=x").status_code == 401


def test_a_tenant_name_that_needs_escaping_reads_its_own_report(gateway):
    name = TENANTS[1]["name"]
    mine = _get(gateway, name, "kodd")
    assert mine.status_code == 200, mine.text
    assert mine.json()["tenants"][name]["requests"] == 3
    assert _get(gateway, name, "ka").status_code == 403
    html = _get(gateway, name, "kboss", "?format=html")
    assert html.status_code == 200 and "&lt;Co&gt;" in html.text and "<Co>" not in html.text
    csv = _get(gateway, name, "adm", "?format=csv").text.splitlines()
    assert csv[1].startswith('"O\'Brien, ""Ünï"" & <Co>",3,')


def test_a_tenant_name_with_a_slash_reads_its_own_report(gateway):
    mine = _get(gateway, "team/blue", "kslash")
    assert mine.status_code == 200, mine.text
    assert mine.json()["tenants"]["team/blue"]["requests"] == 1
    assert _get(gateway, "team/blue", "ka").status_code == 403
    assert (
        _get(gateway, "team/blue", "kboss", "?format=csv")
        .text.splitlines()[1]
        .startswith("team/blue,1,")
    )
