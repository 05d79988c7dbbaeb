"""Requests naming tens of thousands of tensors, over HTTP (JSON and binary) and gRPC: each is
refused with a clear 400 / INVALID_ARGUMENT within a deadline, and the gateway answers the next
good request. The gRPC check for a requested output named twice built a set per prefix of the
list: 10k outputs took 6.6 s of a core and 100k more than 120 s (a 1 MB message)."""

from __future__ import annotations

import json

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc

from gateway.app import create_app
from gateway.grpc import inference_pb2 as pb
from gateway.settings import Settings

from .conftest import serve_app

X = np.random.default_rng(7).standard_normal((1, 784)).astype(np.float32)
MANY = 50_000
DEADLINE_S = 30.0  # a linear check answers in about a second; the quadratic one took minutes


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("clients22-many"),
        repo=small_repo,
        grpc_port=0,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    app = create_app(settings)
    with serve_app(app) as url:
        yield url, app.state.gateway.grpc.target


def still_serving(target: str) -> None:
    client = tgrpc.InferenceServerClient(target)
    inp = tgrpc.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    try:
        assert client.infer("mlp", [inp], client_timeout=DEADLINE_S).as_numpy("output").shape == (
            1,
            10,
        )
    finally:
        client.close()


def grpc_message(outputs: int = 0, inputs: int = 0) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="mlp")
    msg.inputs.add(name="input", datatype="FP32", shape=list(X.shape))
    msg.raw_input_contents.append(X.tobytes())
    for k in range(inputs):
        msg.inputs.add(name=f"i{k}", datatype="FP32", shape=[1])
        msg.raw_input_contents.append(b"\0" * 4)
    for k in range(outputs):
        msg.outputs.add(name=f"o{k}")
    if outputs:
        msg.outputs.add(name="o0")  # named twice, at the very end
    return msg


@pytest.mark.parametrize(
    "msg,says",
    [
        (grpc_message(outputs=MANY), "requested output 'o0' appears twice"),
        (grpc_message(inputs=MANY), "has no input 'i0'"),
    ],
    ids=["outputs, one named twice", "inputs"],
)
def test_grpc_many_tensors_are_refused_within_the_deadline(gateway, msg, says):
    _, target = gateway
    with grpc.insecure_channel(target) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as err:
            infer(msg, timeout=DEADLINE_S)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert says in err.value.details()
    still_serving(target)


def _json_inputs(n: int) -> bytes:
    row = {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": X.ravel().tolist()}
    extra = [{"name": f"i{k}", "shape": [1], "datatype": "FP32", "data": [1.0]} for k in range(n)]
    return json.dumps({"inputs": [row, *extra]}).encode()


def _json_outputs(n: int) -> bytes:
    row = {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": X.ravel().tolist()}
    outputs = [{"name": f"o{k}"} for k in range(n)] + [{"name": "o0"}]
    return json.dumps({"inputs": [row], "outputs": outputs}).encode()


def _binary_inputs(n: int) -> tuple[bytes, dict]:
    entries = [{"name": f"i{k}", "shape": [1], "datatype": "FP32"} for k in range(n)]
    for entry in entries:
        entry["parameters"] = {"binary_data_size": 4}
    head = json.dumps({"inputs": entries}).encode()
    return head + b"\0" * (4 * n), {"Inference-Header-Content-Length": str(len(head))}


@pytest.mark.parametrize(
    "make,says",
    [
        (lambda: (_json_inputs(MANY), {}), "has no input 'i0'"),
        (lambda: (_json_outputs(MANY), {}), "requested output 'o0' appears twice"),
        (lambda: _binary_inputs(MANY), "has no input 'i0'"),
    ],
    ids=["JSON inputs", "JSON outputs, one named twice", "binary inputs"],
)
def test_http_many_tensors_are_refused_within_the_deadline(gateway, make, says):
    url, target = gateway
    body, headers = make()
    r = httpx.post(url + "/v2/models/mlp/infer", content=body, headers=headers, timeout=DEADLINE_S)
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]
    still_serving(target)
