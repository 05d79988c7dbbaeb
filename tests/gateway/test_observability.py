"""Every answer counted with its code, one access-log line per request, per-tenant SLO series, and
``GET /admin/reports/tenants/{tenant}`` (a tenant reads only its own) over a real gateway."""

from __future__ import annotations

import json
import logging
import time

import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app

TENANTS = [
    {"name": "acme", "api_keys": ["ka"], "slo_ms": 5000},
    {"name": "globex", "api_keys": ["kb"]},
]


def _body(n: int = 1) -> dict:
    x = np.zeros((n, 784), np.float32)
    return {
        "inputs": [
            {"name": "input", "shape": [n, 784], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("obs"),
        repo=small_repo,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        routing_policy="vm-only",
        tenants=TENANTS,
        admin_api_key="adm",
        access_log="json",
    )
    with serve_app(create_app(settings)) as url:
        yield url


def test_every_answer_is_counted_and_logged(gateway, caplog):
    caplog.set_level(logging.INFO, logger="tidegate.access")
    with httpx.Client(base_url=gateway, timeout=60) as c:
        ok = c.post("/v2/models/mlp/infer", json=_body(), headers={"x-api-key": "ka"})
        assert ok.status_code == 200, ok.text
        assert (
            c.post(
                "/v2/models/mlp/infer", content=b"{not json", headers={"x-api-key": "ka"}
            ).status_code
            == 400
        )
        assert (
            c.post("/v2/models/nope/infer", json=_body(), headers={"x-api-key": "kb"}).status_code
            == 404
        )
        assert c.post("/v2/models/mlp/infer", json=_body()).status_code == 401
        metrics = c.get("/metrics").text
    for code in ("200", "400", "404", "401"):
        assert f'code="{code}"' in metrics, code
    assert 'tidegate_requests_total{code="400",model="mlp",path="none",tenant="acme"}' in metrics
    assert 'tidegate_slo_met_total{model="mlp",tenant="acme"} 1.0' in metrics
    # an answer is logged once it has been sent: the client may read it first
    lines = _access_lines(caplog, lambda ln: ln["path"] == "/metrics" and ln["status"] == 200)
    infer = [ln for ln in lines if ln["path"].endswith("/infer")]
    assert [ln["status"] for ln in infer] == [200, 400, 404, 401]
    first = infer[0]
    assert (first["method"], first["tenant"], first["model"], first["route"]) == (
        "POST",
        "acme",
        "mlp",
        "vm",
    )
    assert first["latency_ms"] > 0 and first["request_id"] != "-"
    assert infer[3]["tenant"] == "-"  # no key: nobody
    assert any(ln["path"] == "/metrics" and ln["status"] == 200 for ln in lines)


def _access_lines(caplog, last, bound_s: float = 60.0) -> list[dict]:
    """The access log's lines once one matches ``last`` (the gateway logs each answer after
    sending it); ``bound_s`` only bounds a broken gateway."""
    deadline = time.monotonic() + bound_s
    while True:
        records = [r for r in caplog.records if r.name == "tidegate.access"]
        lines = [json.loads(r.getMessage()) for r in records]
        if any(last(ln) for ln in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.005)


def test_tenant_reads_only_its_own_report(gateway):
    with httpx.Client(base_url=gateway, timeout=60) as c:
        for _ in range(3):
            assert (
                c.post(
                    "/v2/models/mlp/infer", json=_body(), headers={"x-api-key": "kb"}
                ).status_code
                == 200
            )
        mine = c.get("/admin/reports/tenants/globex", headers={"x-api-key": "kb"})
        assert mine.status_code == 200, mine.text
        doc = mine.json()
        assert list(doc["tenants"]) == ["globex"] and doc["tenants"]["globex"]["requests"] >= 3
        assert doc["tenants"]["globex"]["cost_usd"] > 0
        assert doc["tenants"]["globex"]["vm_usd"] == pytest.approx(
            doc["tenants"]["globex"]["cost_usd"]
        )
        assert c.get("/admin/reports/tenants/acme", headers={"x-api-key": "kb"}).status_code == 403
        assert (
            c.get(
                "/admin/reports/tenants/acme", headers={"authorization": "Bearer adm"}
            ).status_code
            == 200
        )
        assert c.get("/admin/reports/tenants/acme").status_code == 401
        grouped = c.get(
            "/admin/reports/tenants/globex?by=model,path", headers={"x-api-key": "kb"}
        ).json()
        assert grouped["groups"][0]["key"] == {"tenant": "globex", "model": "mlp", "path": "vm"}
        assert (
            c.get(
                "/admin/reports/tenants/globex?since=yesterday", headers={"x-api-key": "kb"}
            ).status_code
            == 400
        )
        backwards = c.get(
            "/admin/reports/tenants/globex?since=2026-11-30&until=2026-11-01",
            headers={"x-api-key": "kb"},
        )
        assert backwards.status_code == 400 and "before" in backwards.json()["error"]
