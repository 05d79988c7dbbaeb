"""Every kind of refusal is counted in ``tidegate_requests_total`` with its code, over HTTP and
gRPC (the gRPC status's HTTP equivalent), and every series the Grafana dashboard and the alert
rules read is on a live gateway's /metrics after some traffic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import yaml
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.settings import Settings
from vmpool.codec import encode_request

from .conftest import serve_app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "ops" / "deploy"
TENANTS = [
    {"name": "acme", "api_keys": ["ka"], "models": ["mlp"], "daily_budget_usd": 100.0},
    {"name": "slow", "api_keys": ["ks"], "rate_per_s": 0.001, "burst": 1},
]
SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? ", re.M)


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("obs-refusals"),
        repo=small_repo,
        grpc_port=0,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        routing_policy="slo-aware",  # the deployment's (ops/deploy/k8s): its predictions are a panel
        tenants=TENANTS,
        admin_api_key="adm",
        max_body_mb=0.1,
    )
    app = create_app(settings)
    with serve_app(app) as url:
        yield url, f"127.0.0.1:{app.state.gateway.grpc.port}"


def _mlp(n: int = 1) -> dict:
    data = np.zeros(n * 784).tolist()
    return {"inputs": [{"name": "input", "shape": [n, 784], "datatype": "FP32", "data": data}]}


def _resnet() -> dict:
    data = np.zeros(3 * 64 * 64).tolist()
    return {
        "inputs": [{"name": "input", "shape": [1, 3, 64, 64], "datatype": "FP32", "data": data}]
    }


def _codes(metrics: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("tidegate_requests_total{"):
            code = re.search(r'code="(\d+)"', line)[1]
            out[code] = out.get(code, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def test_every_http_refusal_is_counted_with_its_code(gateway):
    url, _ = gateway
    ka = {"x-api-key": "ka"}
    with httpx.Client(base_url=url, timeout=60) as c:
        before = _codes(c.get("/metrics").text)
        sent = {
            "200": c.post("/v2/models/mlp/infer", json=_mlp(), headers=ka),
            "400": c.post("/v2/models/mlp/infer", content=b"{not json", headers=ka),
            "400 tensor": c.post(
                "/v2/models/mlp/infer",
                json={
                    "inputs": [
                        {"name": "input", "shape": [1, 5], "datatype": "FP32", "data": [0.0] * 5}
                    ]
                },
                headers=ka,
            ),
            "401": c.post("/v2/models/mlp/infer", json=_mlp()),
            "403": c.post("/v2/models/resnet18/infer", json=_resnet(), headers=ka),
            # (a tenant limited to some models gets 403 for any other name, served or not)
            "404 model": c.post("/v2/models/nope/infer", json=_mlp(), headers={"x-api-key": "ks"}),
            "404 path": c.post("/v2/models/mlp/infr", json=_mlp(), headers=ka),
            "405": c.get("/v2/models/mlp/infer", headers=ka),
            "413": c.post("/v2/models/mlp/infer", json=_mlp(64), headers=ka),
            "415": c.post(
                "/v2/models/mlp/infer",
                content=b"{}",
                headers={**ka, "content-type": "application/json", "content-encoding": "lzma"},
            ),
        }
        c.post("/v2/models/mlp/infer", json=_mlp(), headers={"x-api-key": "ks"})
        sent["429"] = c.post("/v2/models/mlp/infer", json=_mlp(), headers={"x-api-key": "ks"})
        after = _codes(c.get("/metrics").text)
    for what, resp in sent.items():
        assert resp.status_code == int(what[:3]), (what, resp.status_code, resp.text)
    wanted: dict[str, int] = {}
    for what in sent:
        wanted[what[:3]] = wanted.get(what[:3], 0) + 1
    wanted["200"] += 1  # slow's first request
    for code, n in wanted.items():
        assert after.get(code, 0) - before.get(code, 0) == n, (code, before, after)


def _grpc_error(target: str, model: str, headers: dict, shape=(1, 784)) -> str:
    inp = tgrpc.InferInput("input", list(shape), "FP32")
    inp.set_data_from_numpy(np.zeros(shape, np.float32))
    with pytest.raises(InferenceServerException) as err:
        tgrpc.InferenceServerClient(target).infer(model, [inp], headers=headers)
    return err.value.status()


def test_grpc_refusals_are_counted_with_their_http_equivalent(gateway):
    url, target = gateway
    # "slow" has one token: spent here if the HTTP test (which spends it) did not run first
    httpx.post(url + "/v2/models/mlp/infer", json=_mlp(), headers={"x-api-key": "ks"})
    before = _codes(httpx.get(url + "/metrics").text)
    assert _grpc_error(target, "mlp", {}) == "StatusCode.UNAUTHENTICATED"
    assert _grpc_error(target, "nope", {"x-api-key": "ks"}) == "StatusCode.NOT_FOUND"
    assert _grpc_error(target, "mlp", {"x-api-key": "ka"}, (1, 5)) == "StatusCode.INVALID_ARGUMENT"
    denied = _grpc_error(target, "resnet18", {"x-api-key": "ka"}, (1, 3, 64, 64))
    assert denied == "StatusCode.PERMISSION_DENIED"
    assert _grpc_error(target, "mlp", {"x-api-key": "ks"}) == "StatusCode.RESOURCE_EXHAUSTED"
    after = _codes(httpx.get(url + "/metrics").text)
    for code in ("401", "404", "400", "403", "429"):
        assert after.get(code, 0) - before.get(code, 0) == 1, (code, before, after)


def _dashboard_series() -> set[str]:
    """Every tidegate_* series the dashboards and the alert rules' expressions read (recorded
    rules' own names excluded: Prometheus makes those)."""
    exprs: list[str] = []
    recorded: set[str] = set()
    for path in sorted(DEPLOY.rglob("*.json")):
        doc = json.loads(path.read_text())
        stack = [doc]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                exprs += [
                    v for k, v in node.items() if k in ("expr", "query") and isinstance(v, str)
                ]
                stack += node.values()
            elif isinstance(node, list):
                stack += node
    for path in sorted((DEPLOY / "prometheus").glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc.get("groups", []) if isinstance(doc, dict) else []:
            for rule in group["rules"]:
                exprs.append(rule["expr"])
                recorded.add(rule.get("record", ""))
    names = set().union(*(re.findall(r"\b(tidegate_[a-zA-Z0-9_:]+)", e) for e in exprs))
    return names - recorded


def test_every_series_the_dashboard_and_alerts_read_is_on_a_live_gateway(gateway):
    url, _ = gateway
    names = _dashboard_series()
    assert len(names) >= 8  # the parse found the panels' queries
    body, header_len = encode_request({"input": np.zeros((1, 784), np.float32)})
    with httpx.Client(base_url=url, timeout=60) as c:
        for _ in range(3):
            r = c.post(
                "/v2/models/mlp/infer",
                content=body,
                headers={"x-api-key": "ka", "inference-header-content-length": str(header_len)},
            )
            assert r.status_code == 200, r.text
        exported = set(SERIES.findall(c.get("/metrics").text))
    missing = names - exported
    assert not missing, f"the dashboard or alerts read series /metrics lacks: {sorted(missing)}"


def test_a_model_a_tenant_may_not_use_is_403_before_its_body_is_read_or_checked(gateway):
    """A wrong-shaped body for a model the tenant may not use got a 400 naming the model's
    input shape: the refusal came after the body was checked. HTTP and gRPC."""
    url, grpc_url = gateway
    with httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/v2/models/resnet18/infer", json=_mlp(), headers={"x-api-key": "ka"})
    assert r.status_code == 403 and "may not use model 'resnet18'" in r.json()["error"], r.text
    client = tgrpc.InferenceServerClient(grpc_url)
    x = tgrpc.InferInput("input", [1, 784], "FP32")
    x.set_data_from_numpy(np.zeros((1, 784), np.float32))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("resnet18", [x], headers={"x-api-key": "ka"})
    assert "may not use model" in str(caught.value) and "shape" not in str(caught.value)


def test_made_up_model_names_make_no_series_of_their_own(gateway):
    """A client can send any number of model names: none becomes a label value on any metric,
    HTTP (the fast lane and the app's path, with and without a key) or gRPC."""
    url, target = gateway
    names = [f"made-up-{i}" for i in range(4)]
    with httpx.Client(base_url=url, timeout=60) as c:
        for i, name in enumerate(names):
            key = {"x-api-key": "ka"} if i % 2 else {}
            c.post(f"/v2/models/{name}/infer", json=_mlp(), headers=key)
            c.post(f"/v2/models/{name}/infer?via=app", json=_mlp(), headers=key)
            c.post(f"/v2/models/{name}/versions/3/infer", json=_mlp(), headers=key)
            c.get(f"/v2/models/{name}", headers=key)
            c.get(f"/v2/models/{name}/ready", headers=key)
            _grpc_error(target, name, key)
        labels = set(re.findall(r'model="([^"]*)"', c.get("/metrics").text))
    assert labels <= {"mlp", "resnet18", "unknown", ""}, labels


def test_a_restricted_tenant_cannot_tell_which_other_models_exist(gateway):
    """A tenant limited to some models got 404 for a model the gateway does not serve and 403
    for one it does: probing names told it which exist. Now both are the same 403, on the infer
    and async routes and over gRPC; an unrestricted tenant still gets the 404."""
    url, grpc_url = gateway
    answers = {}
    with httpx.Client(base_url=url, timeout=60) as c:
        for model in ("resnet18", "no-such-model"):
            for route in ("infer", "async-infer"):
                r = c.post(f"/v2/models/{model}/{route}", json=_mlp(), headers={"x-api-key": "ka"})
                answers[model, route] = (r.status_code, r.json()["error"].replace(model, "M"))
        other = c.post("/v2/models/no-such-model/infer", json=_mlp(), headers={"x-api-key": "ks"})
    assert answers[("resnet18", "infer")] == answers[("no-such-model", "infer")], answers
    assert answers[("resnet18", "infer")][0] == 403
    assert answers[("resnet18", "async-infer")] == answers[("no-such-model", "async-infer")]
    assert other.status_code == 404
    client = tgrpc.InferenceServerClient(grpc_url)
    x = tgrpc.InferInput("input", [1, 784], "FP32")
    x.set_data_from_numpy(np.zeros((1, 784), np.float32))
    statuses = []
    for model in ("resnet18", "no-such-model"):
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, [x], headers={"x-api-key": "ka"})
        statuses.append(caught.value.status())
    assert statuses[0] == statuses[1] == "StatusCode.PERMISSION_DENIED", statuses
