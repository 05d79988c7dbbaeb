"""The model repository API with hostile names through the real clients: each a 400 or 404
``{"error": ...}`` (INVALID_ARGUMENT / NOT_FOUND over gRPC) with a short message, the
repository as it was, the models still served. A name not in the repository is a 404 naming
the nearest one; it read "not found in repository the model repository" (the server's path
was replaced inside the phrase that named it)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from .conftest import gateway_on, running_model_server

X = np.random.default_rng(23).standard_normal((1, 784)).astype(np.float32)
NAMES = ["../mlp", "mlp/../resnet18", "/etc/passwd", "ml\x00p", "\U0001f642", "m" * 5000, "MLP"]


@pytest.fixture(scope="module")
def served(small_repo, tmp_path_factory):
    root = tmp_path_factory.mktemp("proto23-hostile")
    with running_model_server(small_repo, root / "ms.log") as replica:
        with gateway_on(replica, small_repo, root / "data") as (url, target):
            yield url, target, str(small_repo)


def index(url: str) -> list:
    return httpx.post(f"{url}/v2/repository/index", timeout=30).json()


def serves(url: str) -> bool:
    client = thttp.InferenceServerClient(url.removeprefix("http://"))
    inp = thttp.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    try:
        return client.infer("mlp", [inp]).as_numpy("output").shape == (1, 10)
    finally:
        client.close()


@pytest.mark.parametrize("name", NAMES, ids=lambda n: repr(n[:20]))
def test_load_and_unload_of_odd_names_over_http_and_grpc_change_nothing(served, name):
    url, target, repo = served
    before = index(url)
    http = thttp.InferenceServerClient(url.removeprefix("http://"))
    grpc_client = tgrpc.InferenceServerClient(target)
    try:
        for call in (http.load_model, http.unload_model):
            with pytest.raises(InferenceServerException) as err:
                call(name)
            assert err.value.status() in ("400", "404"), err.value
            message = err.value.message()  # (bounded: gateway/errors.py MAX_MESSAGE_CHARS)
            assert len(message) < 2100 and repo not in message
        for call in (grpc_client.load_model, grpc_client.unload_model):
            with pytest.raises(InferenceServerException) as err:
                call(name)
            assert err.value.status() in ("StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND")
    finally:
        http.close()
        grpc_client.close()
    assert index(url) == before and serves(url)


def test_a_name_not_in_the_repository_names_the_nearest(served):
    url, _, repo = served
    resp = httpx.post(f"{url}/v2/repository/models/mlpx/load", timeout=30)
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error.startswith("model 'mlpx' not found in the model repository (need mlpx/")
    assert "did you mean 'mlp'?" in error and repo not in error


def test_a_parameter_holding_json_structures_is_a_400_however_deep(served):
    url, _, _ = served
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 784], "data": X.ravel().tolist()}
    head = json.dumps({"inputs": [tensor]})[:-1]
    for value in (b"[[[[1]]]]", b'{"a": {"b": 1}}', b"[" * 50_000 + b"]" * 50_000):
        body = head.encode() + b', "parameters": {"x": ' + value + b"}}"
        resp = httpx.post(f"{url}/v2/models/mlp/infer", content=body, timeout=30)
        assert resp.status_code == 400 and resp.json()["error"], resp.text
    assert serves(url)
