"""The protocol surface a Triton or KServe user reaches for, with the real clients, over loopback:
model config, statistics, the repository extension, health bodies, request ids, 405s, CORS and
the infer endpoint in the OpenAPI schema."""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton

from gateway.app import create_app
from gateway.errors import BadRequest
from gateway.infer_endpoint import route_header, workers_header
from gateway.settings import Settings
from vmpool.artifact import load_artifact

from .conftest import running_model_server, serve_app


def settings_for(data, repo, urls, **extra) -> Settings:
    return Settings.load(
        None,
        data_dir=data,
        repo=repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": urls},
        burst={"enabled": False},
        **extra,
    )


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    settings = settings_for(tmp_path_factory.mktemp("gw-proto"), small_repo, [model_server])
    with serve_app(create_app(settings)) as url:
        yield url


def reference(repo, name, x):
    module = load_artifact(repo, name).load_module()
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


def test_tritonclient_config_statistics_and_infer(gateway, small_repo):
    client = triton.InferenceServerClient(gateway.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    config = client.get_model_config("resnet18")
    assert config["max_batch_size"] == 4
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [3, 64, 64]}]
    assert config["output"][0]["dims"] == [1000]
    before = client.get_inference_statistics("mlp")["model_stats"][0]
    x = np.random.default_rng(3).standard_normal((3, 784)).astype(np.float32)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    got = client.infer("mlp", [inp]).as_numpy("output")
    assert np.abs(got - reference(small_repo, "mlp", x)).max() <= 1e-5
    after = client.get_inference_statistics("mlp")["model_stats"][0]
    assert after["name"] == "mlp" and after["version"] == "1"
    assert (
        after["inference_stats"]["success"]["count"]
        == before["inference_stats"]["success"]["count"] + 1
    )
    assert after["inference_count"] == before["inference_count"] + 3  # rows
    assert after["execution_count"] == before["execution_count"] + 1
    assert 3 in {b["batch_size"] for b in after["batch_stats"]}  # (was batch size 0)
    assert after["inference_stats"]["success"]["ns"] > before["inference_stats"]["success"]["ns"]
    every = client.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in every} == {"mlp", "resnet18"}


# KServe's SDK and tritonclient.grpc both register `inference.*` protobuf messages in the default
# pool, so one process cannot import both: the KServe client runs in its own interpreter, as a
# KServe user's program would.
KSERVE_CLIENT = """
import asyncio, sys
import numpy as np
from kserve import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest

async def run(url, out):
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    try:
        assert await client.is_server_live(url) is True
        assert await client.is_server_ready(url) is True
        assert await client.is_model_ready(url, "mlp") is True
        x = np.random.default_rng(4).standard_normal((2, 784)).astype(np.float32)
        answers = []
        for binary in (False, True):
            inp = InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            req = InferRequest(model_name="mlp", infer_inputs=[inp], request_id="k-1")
            answers.append((await client.infer(url, req, model_name="mlp")).outputs[0].as_numpy())
        np.savez(out, x=x, json=answers[0], binary=answers[1])
    finally:
        await client.close()

asyncio.run(run(sys.argv[1], sys.argv[2]))
"""


def test_kserve_rest_client_v2(gateway, small_repo, tmp_path):
    out = tmp_path / "kserve.npz"
    proc = subprocess.run(
        [sys.executable, "-c", KSERVE_CLIENT, gateway, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = np.load(out)
    want = reference(small_repo, "mlp", got["x"])
    for name in ("json", "binary"):
        assert np.abs(got[name] - want).max() <= 1e-5


def test_health_bodies_request_ids_and_405s(gateway):
    with httpx.Client(base_url=gateway) as c:
        for path, body in [
            ("/v2/health/live", {"live": True}),
            ("/v2/health/ready", {"ready": True}),
            ("/v2/models/mlp/ready", {"name": "mlp", "ready": True}),
        ]:
            r = c.get(path)
            assert r.status_code == 200 and r.json() == body
            assert r.headers["content-type"] == "application/json"
            assert len(r.headers["x-request-id"]) >= 16
        r = c.get("/v2/models/nope", headers={"x-request-id": "mine-1"})
        assert r.status_code == 404 and r.headers["x-request-id"] == "mine-1"
        r = c.post("/v2/models/nope/infer", content=b"{}", headers={"x-request-id": "mine-2"})
        assert r.status_code == 404 and r.headers["x-request-id"] == "mine-2"
        r = c.post("/v2/models/mlp/infer", content=b"{oops")
        assert r.status_code == 400 and r.headers["x-request-id"]
        r = c.get("/v2/models/mlp/infer")
        assert r.status_code == 405 and r.headers["allow"] == "POST" and "POST" in r.json()["error"]
        r = c.request("TRACE", "/v2/health/live")
        assert r.status_code == 405 and r.headers["allow"] == "GET" and r.headers["x-request-id"]
        assert (
            "access-control-allow-origin"
            not in c.get("/v2", headers={"origin": "https://app.example"}).headers
        )  # CORS is off by default


def test_openapi_describes_infer(gateway):
    schema = httpx.get(gateway + "/openapi.json").json()
    op = schema["paths"]["/v2/models/{model}/infer"]["post"]
    assert set(op["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert "Inference-Header-Content-Length" in str(op)
    assert {"200", "400", "404", "413", "429", "503"} <= set(op["responses"])
    assert "InferenceRequest" in schema["components"]["schemas"]
    assert "/v2/models/{model}/config" in schema["paths"]
    assert httpx.get(gateway + "/docs").status_code == 200


def test_cors_when_configured(model_server, small_repo, tmp_path):
    settings = settings_for(
        tmp_path, small_repo, [model_server], cors_origins=["https://app.example"]
    )
    with serve_app(create_app(settings)) as url:
        r = httpx.options(
            url + "/v2/models/mlp/infer",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = httpx.get(url + "/v2/health/live", headers={"origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"


@pytest.fixture
def own_replica(small_repo, tmp_path):
    """A model server of our own: the repository test unloads models on it."""
    with running_model_server(small_repo, tmp_path / "ms.log", "mlp") as url:
        yield url


@pytest.mark.slow
def test_repository_extension_with_the_admin_key(own_replica, small_repo, tmp_path):
    settings = settings_for(
        tmp_path,
        small_repo,
        [own_replica],
        admin_api_key="admin-secret",
        tenants=[{"name": "a", "api_keys": ["tenant-a"]}],
    )
    admin = {"Authorization": "Bearer admin-secret"}
    with serve_app(create_app(settings)) as url:
        host = url.removeprefix("http://")
        assert httpx.post(url + "/v2/repository/index").status_code == 401
        r = httpx.post(url + "/v2/repository/index", headers={"x-api-key": "tenant-a"})
        assert r.status_code == 403 and "admin key" in r.json()["error"]
        client = triton.InferenceServerClient(host)
        index = client.get_model_repository_index(headers=admin)
        assert {row["name"]: row["state"] for row in index} == {"mlp": "READY", "resnet18": "READY"}
        with pytest.raises(triton.InferenceServerException, match="config is not supported"):
            client.load_model("mlp", headers=admin, config='{"max_batch_size": 2}')
        client.unload_model("mlp", headers=admin, unload_dependents=True)
        ready = httpx.post(url + "/v2/repository/index", headers=admin, json={"ready": True})
        assert [row["name"] for row in ready.json()] == ["resnet18"]  # (HTTP listed mlp too)
        every = {row["name"]: row["state"] for row in client.get_model_repository_index(admin)}
        assert every == {"mlp": "UNAVAILABLE", "resnet18": "READY"}
        bad = httpx.post(url + "/v2/repository/index", headers=admin, json={"ready": "yes"})
        assert bad.status_code == 400 and "'ready'" in bad.json()["error"]
        tenant = {"x-api-key": "tenant-a"}
        x = np.zeros((1, 784), np.float32)
        inp = triton.InferInput("input", [1, 784], "FP32")
        inp.set_data_from_numpy(x)
        with pytest.raises(triton.InferenceServerException, match="unknown model"):
            client.infer("mlp", [inp], headers=tenant)
        assert httpx.get(own_replica + "/v2/models/mlp").status_code == 404  # replica too
        client.load_model("mlp", headers=admin)
        assert client.infer("mlp", [inp], headers=tenant).as_numpy("output").shape == (1, 10)
        r = httpx.post(url + "/v2/repository/models/nope/load", headers=admin)
        assert r.status_code == 404 and "not found" in r.json()["error"]
        assert str(small_repo) not in r.json()["error"]  # (not the repository's place on disk)
    replica = triton.InferenceServerClient(own_replica.removeprefix("http://"))
    with pytest.raises(triton.InferenceServerException, match="config or file: parameters"):
        replica.load_model("mlp", config='{"max_batch_size": 2}')  # the model server alike
    replica.load_model("mlp")


@pytest.mark.parametrize("value", ["1_0", "+2", "\u0663", "2.0", "", "0x2"])
def test_worker_counts_are_plain_ascii_integers(value):
    """HTTP header and gRPC metadata alike: int() would take "1_0" as 10 and "+2" as 2."""
    with pytest.raises(BadRequest, match="X-Tidegate-Workers must be an integer"):
        workers_header(value)


def test_worker_counts_parse_and_leave_the_range_to_dispatch():
    assert workers_header(" 3 ") == 3 and workers_header("-1") == -1
    assert workers_header(None) is None and route_header(" VM ") == "vm"
