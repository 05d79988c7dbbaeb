"""Two ``Authorization`` or two ``x-api-key`` headers (or gRPC metadata entries) are refused with
a 400 ``{"error": ...}`` on every route and over gRPC, and counted in tidegate_requests_total.

Before: the infer endpoint took the last header, FastAPI's routes the first, gRPC the last, so
which key (which tenant, or the admin key) a request ran under depended on the route.
"""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.grpc import inference_pb2 as pb
from gateway.settings import Settings

from .conftest import serve_app

KEY_A, KEY_B, ADMIN = "key-a", "key-b", "admin-key"
MLP = "/v2/models/mlp/infer"


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    """(HTTP base URL, gRPC target): two tenants and an admin key."""
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("dup-keys"),
        repo=small_repo,
        grpc_port=0,
        admin_api_key=ADMIN,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        tenants=[{"name": "a", "api_keys": [KEY_A]}, {"name": "b", "api_keys": [KEY_B]}],
    )
    app = create_app(settings)
    with serve_app(app) as url:
        yield url, f"127.0.0.1:{app.state.gateway.grpc.port}"


def infer_body(rows: int = 1) -> dict:
    x = np.random.default_rng(rows).standard_normal((rows, 784)).astype(np.float32)
    return {
        "inputs": [
            {"name": "input", "shape": [rows, 784], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }


def refused_count(url: str) -> float:
    """tidegate_requests_total's 400s, over every label set."""
    text = httpx.get(url + "/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "tidegate_requests_total" and s.labels.get("code") == "400"
    )


# each pair: a valid key and another (another tenant's, a wrong one, the admin key), both orders
TWICE = [
    [("Authorization", f"Bearer {KEY_A}"), ("Authorization", f"Bearer {KEY_B}")],
    [("Authorization", "Bearer wrong"), ("Authorization", f"Bearer {KEY_A}")],
    [("x-api-key", KEY_A), ("X-Api-Key", "wrong")],
    [("x-api-key", "wrong"), ("x-api-key", KEY_B)],
    [("Authorization", f"Bearer {ADMIN}"), ("Authorization", "Bearer wrong")],
]


@pytest.mark.parametrize("headers", TWICE)
@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", MLP, infer_body()),  # small: the fast lane's size
        ("POST", MLP, infer_body(400)),  # past the lane's size: the app's path
        ("POST", "/v2/repository/index", {}),
        ("GET", "/admin/policy", None),
        ("GET", "/v2/models/mlp/stats", None),
    ],
)
def test_a_key_header_twice_is_a_400_on_every_route(gateway, headers, method, path, body):
    url, _ = gateway
    before = refused_count(url)
    r = httpx.request(method, url + path, json=body, headers=headers, timeout=60)
    assert r.status_code == 400, r.text
    assert "more than once" in r.json()["error"]
    assert r.headers["x-request-id"]
    assert refused_count(url) == before + 1
    # the gateway goes on: one key, once, is served
    good = httpx.post(url + MLP, json=infer_body(), headers={"x-api-key": KEY_A}, timeout=60)
    assert good.status_code == 200, good.text


def test_one_of_each_key_header_is_still_served(gateway):
    url, _ = gateway
    headers = {"Authorization": f"Bearer {KEY_A}", "x-api-key": KEY_B}  # Authorization first
    r = httpx.post(url + MLP, json=infer_body(), headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    admin = httpx.post(url + "/v2/repository/index", headers={"x-api-key": ADMIN}, timeout=60)
    assert admin.status_code == 200, admin.text


def grpc_request() -> pb.ModelInferRequest:
    x = np.ones((1, 784), np.float32)
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 784])
    return pb.ModelInferRequest(model_name="mlp", inputs=[tensor], raw_input_contents=[x.tobytes()])


def _call(channel, method: str, request, response_type, metadata):
    stub = channel.unary_unary(
        f"/inference.GRPCInferenceService/{method}",
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_type.FromString,
    )
    return stub(request, metadata=metadata, timeout=60)


@pytest.mark.parametrize("headers", TWICE)
def test_a_key_twice_in_grpc_metadata_is_invalid_argument(gateway, headers):
    url, target = gateway
    metadata = tuple((k.lower(), v) for k, v in headers)
    before = refused_count(url)
    with grpc.insecure_channel(target) as channel:
        with pytest.raises(grpc.RpcError) as err:
            _call(channel, "ModelInfer", grpc_request(), pb.ModelInferResponse, metadata)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "more than once" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            _call(
                channel,
                "RepositoryIndex",
                pb.RepositoryIndexRequest(),
                pb.RepositoryIndexResponse,
                metadata,
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # one key, once: served
        once = (("x-api-key", KEY_A),)
        good = _call(channel, "ModelInfer", grpc_request(), pb.ModelInferResponse, once)
        assert good.model_name == "mlp"
    assert refused_count(url) == before + 1  # the infer call (repository calls are not infer)


def test_a_stream_with_a_key_twice_answers_each_request_with_the_error(gateway):
    _, target = gateway
    with grpc.insecure_channel(target) as channel:
        stream = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        metadata = (("x-api-key", KEY_A), ("x-api-key", KEY_B))
        replies = list(
            stream(iter([grpc_request(), grpc_request()]), metadata=metadata, timeout=60)
        )
    assert len(replies) == 2
    assert all("more than once" in r.error_message for r in replies)
