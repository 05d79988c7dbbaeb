"""Parameters the real clients send that the gateway does not act on: a repository unload's
``unload_dependents``, an infer request's ``priority``, ``timeout``, ``sequence_*`` and custom
parameters. What tritonclient sends is taken over HTTP and gRPC. A malformed unload is refused
as Triton refuses it (400 / INVALID_ARGUMENT) and changes nothing: before, an unload whose body
was not JSON, or whose ``unload_dependents`` was "yes", unloaded the model (200)."""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.grpc import inference_pb2 as pb
from gateway.settings import Settings

from .conftest import running_model_server, serve_app

ADMIN = "admin-22"
X = np.random.default_rng(22).standard_normal((2, 784)).astype(np.float32)


@pytest.fixture(scope="module")
def gateway(small_repo, tmp_path_factory):
    """(HTTP base URL, gRPC target, model server URL): a gateway with an admin key in front of
    its own model server (the tests unload models on it)."""
    root = tmp_path_factory.mktemp("clients22-params")
    with running_model_server(small_repo, root / "ms.log", "mlp") as replica:
        settings = Settings.load(
            None,
            data_dir=root / "data",
            repo=small_repo,
            grpc_port=0,
            admin_api_key=ADMIN,
            vm={"provisioner": "static", "urls": [replica]},
            burst={"enabled": False},
        )
        app = create_app(settings)
        with serve_app(app) as url:
            yield url, app.state.gateway.grpc.target, replica


def http_infer(url: str, **kwargs):
    client = thttp.InferenceServerClient(url.removeprefix("http://"))
    inp = thttp.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    try:
        return client.infer("mlp", [inp], **kwargs).as_numpy("output")
    finally:
        client.close()


def grpc_infer(target: str, **kwargs):
    client = tgrpc.InferenceServerClient(target)
    inp = tgrpc.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    try:
        return client.infer("mlp", [inp], **kwargs).as_numpy("output")
    finally:
        client.close()


def still_served(url: str, target: str) -> None:
    assert thttp.InferenceServerClient(url.removeprefix("http://")).is_model_ready("mlp")
    assert http_infer(url).shape == (2, 10) and grpc_infer(target).shape == (2, 10)


@pytest.mark.parametrize(
    "body,says",
    [
        (b'{"parameters": {"unload_dependents": "yes"}}', "'unload_dependents' must be"),
        (b'{"parameters": {"unload_dependents": 1}}', "'unload_dependents' must be"),
        (b'{"parameters": [true]}', "'parameters' must be an object"),
        (b"{not json", "must be a JSON object"),
    ],
)
def test_a_malformed_unload_over_http_is_a_400_and_the_model_stays(gateway, body, says):
    url, target, _ = gateway
    r = httpx.post(
        f"{url}/v2/repository/models/mlp/unload",
        content=body,
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 400, r.text  # was 200: mlp unloaded
    assert says in r.json()["error"]
    still_served(url, target)


@pytest.mark.parametrize(
    "body,says",
    [
        (b'{"parameters": {"unload_dependents": "yes"}}', "'unload_dependents' must be"),
        (b"[]", "must be a JSON object"),
    ],
)
def test_a_malformed_unload_to_the_model_server_is_a_400_and_the_model_stays(gateway, body, says):
    url, target, replica = gateway
    r = httpx.post(f"{replica}/v2/repository/models/mlp/unload", content=body)
    assert r.status_code == 400, r.text  # was 200: the replica dropped mlp, the gateway's 503s
    assert says in r.json()["error"]
    still_served(url, target)  # (the gateway routes to this replica)
    assert httpx.get(f"{replica}/v2/models/mlp/ready").status_code == 200


def test_a_malformed_unload_over_grpc_is_invalid_argument_and_the_model_stays(gateway):
    url, target, _ = gateway
    request = pb.RepositoryModelUnloadRequest(model_name="mlp")
    request.parameters["unload_dependents"].string_param = "yes"
    with grpc.insecure_channel(target) as channel:
        unload = channel.unary_unary(
            "/inference.GRPCInferenceService/RepositoryModelUnload",
            request_serializer=pb.RepositoryModelUnloadRequest.SerializeToString,
            response_deserializer=pb.RepositoryModelUnloadResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as err:
            unload(request, metadata=[("authorization", f"Bearer {ADMIN}")])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'unload_dependents' must be true or false" in err.value.details()
    still_served(url, target)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tritonclient_unload_with_dependents_then_load(gateway, protocol):
    url, target, _ = gateway
    if protocol == "http":
        client = thttp.InferenceServerClient(url.removeprefix("http://"))
        admin = {"Authorization": f"Bearer {ADMIN}"}
    else:
        client = tgrpc.InferenceServerClient(target)
        admin = {"authorization": f"Bearer {ADMIN}"}
    try:
        client.unload_model("mlp", headers=admin, unload_dependents=True)
        if protocol == "http":
            assert not client.is_model_ready("mlp")
        else:  # (as Triton's ModelReady: a model not served is NOT_FOUND)
            with pytest.raises(InferenceServerException):
                client.is_model_ready("mlp")
        client.load_model("mlp", headers=admin)
        assert client.is_model_ready("mlp")
    finally:
        client.close()
    still_served(url, target)


def test_tritonclient_priority_timeout_and_sequence_parameters_are_taken(gateway):
    url, target, _ = gateway
    kwargs = {"priority": 3, "timeout": 10_000_000, "request_id": "p-1"}
    sequence = {"sequence_id": 7, "sequence_start": True, "sequence_end": False}
    want = http_infer(url)
    for infer, where in ((http_infer, url), (grpc_infer, target)):
        np.testing.assert_array_equal(infer(where, **kwargs), want)
        np.testing.assert_array_equal(infer(where, **sequence), want)
        np.testing.assert_array_equal(infer(where, sequence_id="s-7"), want)


def test_tritonclient_custom_parameters_are_taken(gateway):
    url, target, _ = gateway
    custom = {"custom": "ok", "n": 1, "flag": True}
    want = http_infer(url)
    np.testing.assert_array_equal(http_infer(url, parameters=custom), want)
    np.testing.assert_array_equal(grpc_infer(target, parameters={**custom, "x": 0.5}), want)
