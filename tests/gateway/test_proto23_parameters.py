"""Request parameters Triton reads itself (``priority``, ``timeout``, ``sequence_*``,
``binary_data_output``), of the wrong type, are refused as Triton refuses them: a 400
``{"error": ...}`` over HTTP (Triton's own HTTP says 500 there: its JSON reader's errors are
INTERNAL) and INVALID_ARGUMENT over gRPC, by the gateway and by the model server alike. Before,
a string priority or a negative timeout was served as if it were absent. The values Triton takes
(any uint64 priority or timeout, an int64 or string sequence id) are still served."""

from __future__ import annotations

import json
import queue

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

from gateway.grpc import inference_pb2 as pb
from gateway.grpc.servicer import SERVICE

from .conftest import gateway_on, running_model_server
from .test_clients22_parameters import X, grpc_infer, http_infer

MISTYPED = [
    {"priority": "high"},
    {"priority": 1.5},
    {"priority": -1},
    {"priority": 2**64},
    {"priority": True},
    {"timeout": "10"},
    {"timeout": -5},
    {"timeout": 2.5},
    {"sequence_id": -3},
    {"sequence_id": 1.0},
    {"sequence_start": "yes"},
    {"sequence_end": 1},
    {"custom": {"a": 1}},  # (the protocol's parameter is a string, a number or a boolean)
    {"custom": [1, 2]},
    {"custom": None},
    {"triton_custom": 1},  # (reserved for Triton)
]


@pytest.fixture(scope="module")
def served(small_repo, tmp_path_factory):
    """(gateway URL, gateway gRPC target, model server URL)."""
    root = tmp_path_factory.mktemp("proto23-params")
    with running_model_server(small_repo, root / "ms.log", "mlp") as replica:
        with gateway_on(replica, small_repo, root / "data") as (url, target):
            yield url, target, replica


def json_body(parameters: dict) -> bytes:
    tensor = {"name": "input", "datatype": "FP32", "shape": [2, 784], "data": X.ravel().tolist()}
    return json.dumps({"inputs": [tensor], "parameters": parameters}).encode()


@pytest.mark.parametrize("params", MISTYPED, ids=lambda p: json.dumps(p))
def test_a_mistyped_reserved_parameter_over_http_is_a_400(served, params):
    url, _, replica = served
    (name,) = params
    name = name.removeprefix("triton_")
    for where in (url, replica):  # the gateway, and a model server called directly
        resp = httpx.post(f"{where}/v2/models/mlp/infer", content=json_body(params), timeout=30)
        assert resp.status_code == 400, resp.text
        assert name in resp.json()["error"]
    want = http_infer(url)
    np.testing.assert_array_equal(http_infer(replica), want)  # both still serve


def test_tritonclient_http_with_a_string_priority_or_negative_timeout_is_refused(served):
    url, _, _ = served
    for kwargs in ({"priority": "high"}, {"timeout": -1}, {"sequence_id": 2.5}):
        with pytest.raises(InferenceServerException) as err:
            http_infer(url, **kwargs)
        assert err.value.status() == "400" and next(iter(kwargs)) in err.value.message()


def test_the_values_triton_takes_are_served(served):
    url, target, _ = served
    want = http_infer(url)
    for kwargs in (
        {"priority": 2**64 - 1, "timeout": 2**64 - 1},  # (uint64: a priority past the levels
        {"priority": 1, "timeout": 0},  # is the default level in Triton)
        {"sequence_id": "s-1", "sequence_start": True, "sequence_end": False},
        {"sequence_id": 2**64 - 1},
    ):
        np.testing.assert_array_equal(http_infer(url, **kwargs), want)
    for kwargs in ({"priority": 2**63 - 1, "timeout": 2**63 - 1}, {"sequence_id": -1}):
        np.testing.assert_array_equal(grpc_infer(target, **kwargs), want)


def raw_call(target: str, msg: pb.ModelInferRequest):
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        return call(msg, timeout=30)


def request_with(name: str, kind: str, value) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="mlp")
    msg.inputs.add(name="input", datatype="FP32", shape=[2, 784])
    msg.raw_input_contents.append(X.tobytes())
    setattr(msg.parameters[name], f"{kind}_param", value)
    return msg


@pytest.mark.parametrize(
    "name,kind,value",
    [
        ("priority", "string", "high"),
        ("priority", "double", 1.0),
        ("priority", "bool", True),
        ("priority", "int64", -1),
        ("timeout", "uint64", 10),
        ("timeout", "string", "10"),
        ("timeout", "int64", -5),
        ("sequence_id", "double", 1.0),
        ("sequence_start", "int64", 1),
        ("sequence_end", "string", "true"),
        ("triton_enable_empty_final_response", "string", "yes"),
        ("triton_custom", "bool", True),
        ("custom", "uint64", 5),  # (a model's parameter: int64, bool, string or double)
    ],
)
def test_a_mistyped_reserved_parameter_over_grpc_is_invalid_argument(served, name, kind, value):
    _, target, _ = served
    with pytest.raises(grpc.RpcError) as err:
        raw_call(target, request_with(name, kind, value))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert name in err.value.details()
    resp = raw_call(target, request_with("priority", "uint64", 2**64 - 1))  # Triton takes it
    assert resp.outputs[0].shape == [2, 10]


def test_a_model_parameter_without_a_value_over_grpc_is_invalid_argument(served):
    _, target, _ = served
    msg = request_with("custom", "string", "v")
    msg.parameters["empty"].Clear()  # (present, no kind set)
    with pytest.raises(grpc.RpcError) as err:
        raw_call(target, msg)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'empty'" in err.value.details()
    for kind, value in (("int64", -3), ("bool", False), ("string", ""), ("double", 0.5)):
        assert raw_call(target, request_with("custom", kind, value)).outputs[0].shape == [2, 10]


def test_a_negative_timeout_mid_stream_is_its_error_and_the_stream_goes_on(served):
    """(tritonclient sends priority as uint64, timeout as int64: a negative timeout reaches us)"""
    _, target, _ = served
    client = tgrpc.InferenceServerClient(target)
    got: queue.Queue = queue.Queue()
    inp = tgrpc.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    try:
        for k, kwargs in enumerate(({}, {"timeout": -1}, {"timeout": -(2**63)}, {"priority": 7})):
            client.async_stream_infer("mlp", [inp], request_id=f"s{k}", **kwargs)
        answers = [got.get(timeout=60) for _ in range(4)]
    finally:
        client.stop_stream()
        client.close()
    assert [error is None for _, error in answers] == [True, False, False, True]
    assert "'timeout'" in str(answers[1][1]) and "'timeout'" in str(answers[2][1])
    assert answers[3][0].get_response().id == "s3"
