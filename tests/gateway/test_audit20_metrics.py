"""Audit 20: an async request's 202 belongs to its tenant, on /metrics and in the access log.

Before, a ``Prefer: respond-async`` call answered 202 was counted as
``tidegate_requests_total{tenant="unknown",code="202"}`` and logged ``tenant=-``: the infer
endpoint noted the tenant only on the synchronous path, so a tenant's async traffic was missing
from its own series and lines.
"""

from __future__ import annotations

import json
import logging
import re

import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app

TENANTS = [{"name": "acme", "api_keys": ["ka"]}, {"name": "beta", "api_keys": ["kb"]}]


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("audit20-metrics"),
        repo=small_repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        routing_policy="vm-only",
        tenants=TENANTS,
        access_log="json",
    )
    app = create_app(settings)
    with serve_app(app) as url:
        yield url


def _mlp() -> dict:
    data = np.zeros(784).tolist()
    return {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": data}]}


def _series(text: str, name: str) -> dict[tuple, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', line)))
            out[labels] = float(line.rsplit(" ", 1)[1])
    return out


def test_async_202_is_counted_and_logged_for_its_tenant(gateway, caplog):
    async_headers = {"x-api-key": "kb", "prefer": "respond-async"}
    with httpx.Client(base_url=gateway, timeout=60) as c:
        before = c.get("/metrics").text
        with caplog.at_level(logging.INFO, logger="tidegate.access"):
            resp = c.post("/v2/models/mlp/infer", json=_mlp(), headers=async_headers)
            unknown_key = c.post(
                "/v2/models/mlp/infer", json=_mlp(), headers={**async_headers, "x-api-key": "no"}
            )
        after = c.get("/metrics").text
    assert resp.status_code == 202, resp.text
    assert unknown_key.status_code == 401
    key = (("code", "202"), ("model", "mlp"), ("path", "none"), ("tenant", "beta"))
    old, new = _series(before, "tidegate_requests_total"), _series(after, "tidegate_requests_total")
    assert new.get(key, 0) - old.get(key, 0) == 1, new
    assert not any(("tenant", "unknown") in k and ("code", "202") in k for k in new), new
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tidegate.access"]
    accepted = [ln for ln in lines if ln["status"] == 202]
    assert [ln["tenant"] for ln in accepted] == ["beta"], lines
    assert accepted[0]["request_id"] == resp.json()["id"]
    assert [ln["tenant"] for ln in lines if ln["status"] == 401] == ["-"]


def test_async_202_is_not_an_slo_answer(gateway):
    """The job's place answers in milliseconds: counting it as an answer met would lift the
    tenant's SLO attainment with work not yet done."""
    with httpx.Client(base_url=gateway, timeout=60) as c:
        before = _series(c.get("/metrics").text, "tidegate_slo_requests_total")
        resp = c.post(
            "/v2/models/mlp/infer",
            json=_mlp(),
            headers={"x-api-key": "ka", "prefer": "respond-async"},
        )
        after = _series(c.get("/metrics").text, "tidegate_slo_requests_total")
    assert resp.status_code == 202
    key = (("model", "mlp"), ("tenant", "acme"))
    assert after.get(key, 0) == before.get(key, 0), after
