"""The classification extension (``class_count`` in tritonclient): the top k classes as BYTES
``"score:index"``, over HTTP (JSON and binary) and gRPC, from the gateway and the model server."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from gateway.app import create_app
from gateway.settings import Settings
from vmpool.artifact import load_artifact

from .conftest import serve_app


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    """Yields (HTTP URL, gRPC target) of a gateway without tenants."""
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("classify"),
        repo=small_repo,
        grpc_port=0,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    app = create_app(settings)
    with serve_app(app) as url:
        yield url, f"127.0.0.1:{app.state.gateway.grpc.port}"


@pytest.fixture(scope="module")
def batch(small_repo):
    x = np.random.default_rng(7).standard_normal((2, 784)).astype(np.float32)
    with torch.inference_mode():
        scores = load_artifact(small_repo, "mlp").load_module()(torch.from_numpy(x)).numpy()
    return x, scores


def _check_top(labels: np.ndarray, scores: np.ndarray, k: int) -> None:
    assert labels.shape == (scores.shape[0], k)
    for row in range(scores.shape[0]):
        # (tritonclient gives bytes from binary data, text from JSON)
        texts = [item if isinstance(item, str) else item.decode() for item in labels[row]]
        pairs = [text.split(":") for text in texts]
        indices = [int(index) for _, index in pairs]
        assert indices == np.argsort(-scores[row], kind="stable")[:k].tolist()
        got = np.array([float(value) for value, _ in pairs])
        assert np.abs(got - scores[row, indices]).max() <= 1e-5


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_http_class_count_from_gateway_and_model_server(
    gateway, model_server, batch, binary
):
    x, scores = batch
    for url in (gateway[0], model_server):
        client = thttp.InferenceServerClient(url.removeprefix("http://"))
        inp = thttp.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = thttp.InferRequestedOutput("output", binary_data=binary, class_count=3)
        result = client.infer("mlp", [inp], outputs=[out])
        assert result.get_output("output")["datatype"] == "BYTES"
        _check_top(result.as_numpy("output"), scores, 3)


def test_tritonclient_grpc_class_count(gateway, batch):
    x, scores = batch
    inp = tgrpc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    out = tgrpc.InferRequestedOutput("output", class_count=2)
    result = tgrpc.InferenceServerClient(gateway[1]).infer("mlp", [inp], outputs=[out])
    _check_top(result.as_numpy("output"), scores, 2)


@pytest.mark.parametrize("count", [0, -1, "3", True, 1.5])
def test_a_bad_class_count_is_a_clear_400(gateway, batch, count):
    x, _ = batch
    body = {
        "inputs": [{"name": "input", "shape": [2, 784], "datatype": "FP32", "data": x.tolist()}],
        "outputs": [{"name": "output", "parameters": {"classification": count}}],
    }
    r = httpx.post(gateway[0] + "/v2/models/mlp/infer", json=body)
    assert r.status_code == 400 and "classification must be a positive integer" in r.json()["error"]
