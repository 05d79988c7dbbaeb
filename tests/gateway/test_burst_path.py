"""The burst path through the gateway: local function runtime, partitioned fork-join, billing."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app
from .ledger_rows import ledger_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hybrid_gateway(model_server, small_repo, tmp_path_factory):
    data = tmp_path_factory.mktemp("gw-burst")
    settings = Settings.load(
        None,
        data_dir=data,
        repo=small_repo,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": True, "memory_mb": 1024, "concurrency": 12},
    )
    with serve_app(create_app(settings)) as url:
        yield url, data


def _infer(url, x, headers, binary):
    client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=300)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = triton.InferRequestedOutput("output", binary_data=binary)
    result = client.infer("resnet18", [inp], outputs=[out], headers=headers)
    return result.as_numpy("output"), result.get_response()


def test_burst_with_4_workers_equals_the_vm_path(hybrid_gateway):
    url, data = hybrid_gateway
    x = np.random.default_rng(5).standard_normal((1, 3, 64, 64)).astype(np.float32)
    vm, _ = _infer(url, x, {"X-Tidegate-Route": "vm"}, True)
    for binary in (True, False):
        got, _ = _infer(url, x, {"X-Tidegate-Route": "burst", "X-Tidegate-Workers": "4"}, binary)
        assert got.shape == vm.shape
        assert np.abs(got - vm).max() <= 1e-5 * max(1.0, np.abs(vm).max())

    body = {
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }
    resp = httpx.post(
        f"{url}/v2/models/resnet18/infer",
        json=body,
        timeout=300,
        headers={"X-Tidegate-Route": "burst", "X-Tidegate-Workers": "4"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-tidegate-path"] == "burst"
    assert resp.headers["x-tidegate-workers"] == "4"
    assert float(resp.headers["x-tidegate-cost-usd"]) > 0
    out = resp.json()["outputs"][0]
    got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    assert np.abs(got - vm).max() <= 1e-5 * max(1.0, np.abs(vm).max())

    # billed in the ledger with function costs and the cold starts of the first request
    # (in the journal before the answers; another process sees them once they are folded)
    rows = ledger_rows(
        data,
        "SELECT workers, cold_starts, function_cost_usd, billed_ms "
        "FROM requests WHERE path='burst' AND status=200 ORDER BY ts",
        at_least=3,
    )
    assert len(rows) == 3
    assert all(r[0] == 4 and r[2] > 0 and r[3] > 0 for r in rows)
    assert rows[0][1] >= 1  # the first burst request started function instances
    metrics = httpx.get(url + "/metrics").text
    assert "tidegate_function_cold_starts_total" in metrics


def test_bad_route_headers(hybrid_gateway):
    url, _ = hybrid_gateway
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]}
    )
    for headers in (
        {"X-Tidegate-Route": "moon"},
        {"X-Tidegate-Workers": "many"},
        {"X-Tidegate-Route": "burst", "X-Tidegate-Workers": "0"},
        {"X-Tidegate-Route": "burst", "X-Tidegate-Workers": "100000"},
    ):
        resp = httpx.post(f"{url}/v2/models/mlp/infer", content=body, headers=headers)
        assert resp.status_code == 400, (headers, resp.text)
        assert resp.json()["error"]
