"""The burst path through the gateway: local function runtime, partitioned fork-join, billing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import threading

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from burst.service import BurstService
from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app
from .ledger_rows import ledger_rows

pytestmark = pytest.mark.slow


def _settings(data, small_repo, model_server) -> Settings:
    return Settings.load(
        None,
        data_dir=data,
        repo=small_repo,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": True, "memory_mb": 1024, "concurrency": 12},
    )


@pytest.fixture(scope="module")
def hybrid_gateway(model_server, small_repo, tmp_path_factory):
    data = tmp_path_factory.mktemp("gw-burst")
    with serve_app(create_app(_settings(data, small_repo, model_server))) as url:
        yield url, data


def _planned_workers(model_server, small_repo, tmp_path, asked: int) -> int:
    """The workers `tidegate plan resnet18 --workers ASKED` uses with the gateway's config: 1
    where no split pays (the plan is then the whole model in one function)."""
    settings = _settings(tmp_path, small_repo, model_server)
    plan = asyncio.run(BurstService.from_settings(settings).plan_for("resnet18", asked, 1))
    return plan.workers


def _infer(url, x, headers, binary):
    client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=300)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = triton.InferRequestedOutput("output", binary_data=binary)
    result = client.infer("resnet18", [inp], outputs=[out], headers=headers)
    return result.as_numpy("output"), result.get_response()


def test_burst_with_4_workers_equals_the_vm_path(
    hybrid_gateway, model_server, small_repo, tmp_path
):
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
    planned = _planned_workers(model_server, small_repo, tmp_path, 4)
    assert resp.headers["x-tidegate-workers"] == str(planned)
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
    assert all(r[0] == planned and r[2] > 0 and r[3] > 0 for r in rows)
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


def test_client_request_ids_are_the_clients_text_not_keys_or_headers(hybrid_gateway):
    """A body's "id" is whatever the client wrote: two clients may send the same one at once,
    it may hold '/' (the burst path's object keys once took it), or CR/LF (it once went into the
    answer's and the replica request's headers, and the connection closed with no answer)."""
    url, _ = hybrid_gateway
    rng = np.random.default_rng(11)
    xs = [rng.standard_normal((1, 3, 64, 64)).astype(np.float32) for _ in range(2)]
    vms = [_infer(url, x, {"X-Tidegate-Route": "vm"}, True)[0] for x in xs]
    burst = {"X-Tidegate-Route": "burst", "X-Tidegate-Workers": "2"}
    barrier = threading.Barrier(2)

    def same_id(x):
        client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=300)
        inp = triton.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        barrier.wait()
        result = client.infer("resnet18", [inp], request_id="shared/../id", headers=burst)
        return result.as_numpy("output"), result.get_response()["id"]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(same_id, xs))
    for (got, echoed), vm in zip(answers, vms):
        assert echoed == "shared/../id"
        assert np.abs(got - vm).max() <= 1e-5 * max(1.0, np.abs(vm).max())

    x = xs[0].tobytes()
    head = json.dumps(
        {
            "id": "a\r\nX-Evil: 1",
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, 3, 64, 64],
                    "parameters": {"binary_data_size": len(x)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    for route in ("vm", "burst"):
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(
                b"POST /v2/models/resnet18/infer HTTP/1.1\r\nHost: t\r\n"
                b"X-Tidegate-Route: %s\r\nInference-Header-Content-Length: %d\r\n"
                b"Content-Length: %d\r\n\r\n"
                % (route.encode(), len(head), len(head) + len(x))
                + head
                + x
            )
            answer = b""
            while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
                answer += chunk
        status, *header_lines = answer.split(b"\r\n\r\n")[0].split(b"\r\n")
        assert status.startswith(b"HTTP/1.1 200"), (route, answer[:300])
        assert not any(line.lower().startswith(b"x-evil") for line in header_lines)
        ids = [line for line in header_lines if line.lower().startswith(b"x-request-id:")]
        assert len(ids) == 1 and b"a" != ids[0].split(b":", 1)[1].strip()


def test_a_planned_models_price_reaches_the_live_view(model_server, small_repo, tmp_path):
    """The scaler prices a spilled request by its plan's cost model (compute, invocation fees,
    store requests), which the burst service reports with the plan's predicted latency."""
    from policies.costs import PriceTable

    service = BurstService.from_settings(_settings(tmp_path, small_repo, model_server))
    plan = asyncio.run(service.plan_for("resnet18", 4, 1))
    stats = service.live_stats()
    assert stats.predicted_ms["resnet18"] > 0
    fees = plan.workers * PriceTable().fn_usd_per_request  # (at least one invocation each)
    assert fees < stats.predicted_usd["resnet18"] < 1e-3, stats.predicted_usd
