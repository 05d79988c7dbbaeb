"""ops23: the ``fail_open`` setting. A gateway whose limits live in a real redis-server (unix
socket) that is killed mid-traffic: with ``fail_open = false`` a limited tenant's requests are
refused with 503, a clear error and Retry-After, counted with their code, until Redis is back;
an unlimited tenant is served throughout; with the default (true) they are admitted unchecked.

Before, there was no choice: every request was admitted while Redis was down."""

from __future__ import annotations

import json
import logging

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app
from .test_audit20_metrics import _series
from .test_rel22_redis_outage import _start_redis, pytestmark  # noqa: F401 - skip without redis

TENANTS = [
    {"name": "metered", "api_keys": ["k-metered"], "rate_per_s": 1000, "burst": 1000},
    {"name": "free", "api_keys": ["k-free"]},  # no limits: Redis is never asked
]


def _mlp() -> dict:
    data = np.zeros(784).tolist()
    return {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": data}]}


def _gateway(model_server, small_repo, data_dir, redis_url: str, **extra):
    settings = Settings.load(
        None,
        data_dir=data_dir,
        repo=small_repo,
        grpc_port=0,
        access_log="json",
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        routing_policy="vm-only",
        tenants=TENANTS,
        redis_url=redis_url,
        **extra,
    )
    app = create_app(settings)
    return app, serve_app(app)


def _grpc_status(app, key: str) -> str:
    inp = tgrpc.InferInput("input", [1, 784], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 784), np.float32))
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{app.state.gateway.grpc.port}")
    try:
        client.infer("mlp", [inp], headers={"x-api-key": key})
    except InferenceServerException as exc:
        return f"{exc.status()}: {exc.message()}"
    finally:
        client.close()
    return "OK"


def _infer(client: httpx.Client, key: str) -> httpx.Response:
    return client.post("/v2/models/mlp/infer", json=_mlp(), headers={"x-api-key": key})


def test_fail_open_false_refuses_limited_requests_while_redis_is_down(
    model_server, small_repo, tmp_path, caplog
):
    proc, url = _start_redis(tmp_path)
    app, serving = _gateway(model_server, small_repo, tmp_path / "data", url, fail_open=False)
    try:
        with serving as gw, caplog.at_level(logging.INFO, "tidegate.access"):
            with httpx.Client(base_url=gw, timeout=60) as client:
                for _ in range(3):
                    assert _infer(client, "k-metered").status_code == 200
                proc.kill()  # mid-traffic
                proc.wait(10)
                refused = [_infer(client, "k-metered") for _ in range(5)]
                assert [r.status_code for r in refused] == [503] * 5, refused[0].text
                error = refused[0].json()["error"]
                assert "Redis" in error and "fail_open" in error
                assert refused[0].headers["retry-after"] == "1"
                assert _infer(client, "k-free").status_code == 200  # no limits to check
                grpc_status = _grpc_status(app, "k-metered")
                assert grpc_status.startswith("StatusCode.UNAVAILABLE"), grpc_status
                assert "fail_open" in grpc_status
                proc, url = _start_redis(tmp_path)  # back, on the same socket
                assert _infer(client, "k-metered").status_code == 200
                series = _series(client.get("/metrics").text, "tidegate_requests_total")
        codes = {dict(k)["code"]: v for k, v in series.items() if ("tenant", "metered") in k}
        assert codes == {"200": 4.0, "503": 6.0}  # (HTTP and gRPC)
        lines = [json.loads(r.getMessage()) for r in caplog.records if "infer" in r.getMessage()]
        metered = [line["status"] for line in lines if line["tenant"] == "metered"]
        assert sorted(metered) == [200] * 4 + [503] * 6, metered
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("extra", [{}, {"fail_open": True}])
def test_fail_open_default_admits_while_redis_is_down(model_server, small_repo, tmp_path, extra):
    proc, url = _start_redis(tmp_path)
    _, serving = _gateway(model_server, small_repo, tmp_path / "data", url, **extra)
    try:
        with serving as gw:
            with httpx.Client(base_url=gw, timeout=60) as client:
                assert _infer(client, "k-metered").status_code == 200
                proc.kill()
                proc.wait(10)
                assert [_infer(client, "k-metered").status_code for _ in range(3)] == [200] * 3
    finally:
        proc.kill()
        proc.wait(10)


def test_fail_open_must_be_a_boolean(tmp_path):
    with pytest.raises(ValueError, match="fail_open"):
        Settings.load(None, data_dir=tmp_path, fail_open="sometimes")
