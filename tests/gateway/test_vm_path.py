"""The gateway's VM path over real loopback servers, with the real Triton client."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton

from gateway.app import create_app
from gateway.settings import Settings
from vmpool.artifact import load_artifact

from .conftest import serve_app
from .ledger_rows import ledger_rows


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    data = tmp_path_factory.mktemp("gw-data")
    settings = Settings.load(
        None,
        data_dir=data,
        repo=small_repo,
        max_body_mb=1.0,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    with serve_app(create_app(settings)) as url:
        yield url, data


def reference(repo, name, x):
    module = load_artifact(repo, name).load_module()
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infer_matches_the_exported_program(gateway, small_repo, binary):
    url, _ = gateway
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("resnet18")
    meta = client.get_model_metadata("resnet18")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 64, 64]}]
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = triton.InferRequestedOutput("output", binary_data=binary)
    result = client.infer("resnet18", [inp], outputs=[out])
    got = result.as_numpy("output")
    assert got.shape == (2, 1000)
    assert np.abs(got - reference(small_repo, "resnet18", x)).max() <= 1e-5


def test_json_request_and_headers(gateway, small_repo):
    url, _ = gateway
    x = np.random.default_rng(2).standard_normal((3, 784)).astype(np.float32)
    body = {
        "inputs": [{"name": "input", "shape": [3, 784], "datatype": "FP32", "data": x.tolist()}]
    }
    resp = httpx.post(f"{url}/v2/models/mlp/infer", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-tidegate-path"] == "vm"
    assert float(resp.headers["x-tidegate-cost-usd"]) > 0
    assert "total;dur=" in resp.headers["server-timing"]
    out = resp.json()["outputs"][0]
    got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    assert np.abs(got - reference(small_repo, "mlp", x)).max() <= 1e-5


def _post(url, path, content, headers=None):
    return httpx.post(url + path, content=content, headers=headers or {})


def test_hostile_input_gets_clear_errors_and_the_server_stays_live(gateway):
    url, _ = gateway
    good = {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}
    cases = [
        ("/v2/models/nope/infer", json.dumps({"inputs": [good]}), None, 404),
        ("/v2/models/mlp/versions/7/infer", json.dumps({"inputs": [good]}), None, 404),
        (
            "/v2/models/mlp/infer",
            json.dumps({"inputs": [{**good, "shape": [1, 783], "data": [0.0] * 783}]}),
            None,
            400,
        ),
        (
            "/v2/models/mlp/infer",
            json.dumps({"inputs": [{**good, "datatype": "INT32", "data": [0] * 784}]}),
            None,
            400,
        ),
        ("/v2/models/mlp/infer", json.dumps({"inputs": [{**good, "data": [0.0] * 10}]}), None, 400),
        ("/v2/models/mlp/infer", json.dumps({"inputs": [{**good, "name": "x"}]}), None, 400),
        ("/v2/models/mlp/infer", "{not json", None, 400),
        ("/v2/models/mlp/infer", json.dumps({"inputs": []}), None, 400),
        ("/v2/models/mlp/infer", json.dumps([1, 2]), None, 400),
        (
            "/v2/models/mlp/infer",
            json.dumps({"inputs": [{**good, "shape": [33, 784], "data": [0.0] * 33 * 784}]}),
            None,
            400,
        ),
        # binary header length that does not match the body
        (
            "/v2/models/mlp/infer",
            b'{"inputs": []}',
            {"Inference-Header-Content-Length": "999"},
            400,
        ),
        ("/v2/models/mlp/infer", b'{"inputs": []}', {"Inference-Header-Content-Length": "x"}, 400),
        ("/v2/models/mlp/infer", b"\0" * (2 * 1024 * 1024), None, 413),
    ]
    for path, body, headers, status in cases:
        resp = _post(url, path, body if isinstance(body, bytes) else body.encode(), headers)
        assert resp.status_code == status, (path, body[:80], resp.status_code, resp.text)
        assert "error" in resp.json() and resp.json()["error"]
    # binary tensor whose byte size does not match its shape
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 784],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    ).encode()
    resp = _post(
        url,
        "/v2/models/mlp/infer",
        header + b"\0" * 16,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert resp.status_code == 400
    assert httpx.get(url + "/v2/health/live").status_code == 200
    ok = _post(url, "/v2/models/mlp/infer", json.dumps({"inputs": [good]}).encode())
    assert ok.status_code == 200


def test_ledger_and_metrics_record_answers(gateway):
    url, data = gateway
    good = {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}
    resp = _post(url, "/v2/models/mlp/infer", json.dumps({"inputs": [good]}).encode())
    assert resp.status_code == 200
    # the row is in the journal before the answer; another process sees it once it is folded
    rows = ledger_rows(
        data,
        "SELECT tenant, model, path, status, cost_usd, reason FROM requests WHERE id = ?",
        (resp.headers["x-request-id"],),
    )
    assert rows and rows[0][:4] == ("default", "mlp", "vm", 200) and rows[0][4] > 0
    assert rows[0][5]  # why it went there (the routing decision's reason)
    metrics = httpx.get(url + "/metrics").text
    assert 'tidegate_requests_total{code="200",model="mlp",path="vm",tenant="default"}' in metrics


def test_tenants_keys_rate_limits_and_route_permission(model_server, small_repo, tmp_path):
    settings = Settings.load(
        None,
        data_dir=tmp_path,
        repo=small_repo,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        tenants=[{"name": "acme", "api_keys": ["k1"], "rate_per_s": 1, "burst": 2}],
    )
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]}
    ).encode()
    app = create_app(settings)
    app.state.gateway.tenants.clock = lambda: 1_800_000_000.0  # time stands still: no refill
    with serve_app(app) as url:
        assert _post(url, "/v2/models/mlp/infer", body).status_code == 401
        assert _post(url, "/v2/models/mlp/infer", body, {"x-api-key": "bad"}).status_code == 401
        forced = _post(
            url,
            "/v2/models/mlp/infer",
            body,
            {"Authorization": "Bearer k1", "X-Tidegate-Route": "vm"},
        )
        assert forced.status_code == 403
        codes = [
            _post(url, "/v2/models/mlp/infer", body, {"Authorization": "Bearer k1"})
            for _ in range(3)
        ]
        assert [c.status_code for c in codes[:2]] == [200, 200]
        assert codes[2].status_code == 429 and codes[2].headers["retry-after"] == "1"
        assert (
            codes[2].headers["x-ratelimit-limit"],
            codes[2].headers["x-ratelimit-remaining"],
            codes[2].headers["x-ratelimit-reset"],
        ) == ("2", "0", "2")


def test_failover_to_a_live_replica(model_server, small_repo, tmp_path):
    from tests.support.loopback import refusing_port

    with refusing_port() as port:
        _failover(f"http://127.0.0.1:{port}", model_server, small_repo, tmp_path)


def _failover(dead, model_server, small_repo, tmp_path):
    """Twelve requests over a dead replica (``dead``: connection refused) and a live one."""
    settings = Settings.load(
        None,
        data_dir=tmp_path,
        repo=small_repo,
        vm={"provisioner": "static", "urls": [dead, model_server], "health_interval_s": 30},
        burst={"enabled": False},
    )
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]}
    ).encode()
    with serve_app(create_app(settings)) as url:
        codes = [_post(url, "/v2/models/mlp/infer", body).status_code for _ in range(12)]
    assert codes == [200] * 12
