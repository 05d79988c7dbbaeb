"""Model readiness for a model or version the gateway does not serve, as Triton answers it.

Triton's source (server src/http_server.cc HandleModelReady, src/grpc/grpc_server.cc
ModelReady; core TRITONSERVER_ServerModelIsReady -> ModelLifeCycle::GetModel): both ask
GetModel first, which fails NOT_FOUND ("Request for unknown model: 'm' version 7 is not
found"). HTTP maps NOT_FOUND to 404 (its 400 "Model version not ready" is only for a model
GetModel found that then reports not ready), so tritonclient.http's is_model_ready is False;
gRPC returns the error, so tritonclient.grpc's is_model_ready raises NOT_FOUND. Before, the
gateway's gRPC answered ready=false with OK for these."""

from __future__ import annotations

import httpx
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from .conftest import gateway_on, running_model_server

UNSERVED = [("mlp", "7"), ("nope", ""), ("nope", "1")]


@pytest.fixture(scope="module")
def served(small_repo, tmp_path_factory):
    root = tmp_path_factory.mktemp("proto24-ready")
    with running_model_server(small_repo, root / "ms.log", "mlp") as replica:
        with gateway_on(replica, small_repo, root / "data") as (url, target):
            yield url, target


@pytest.mark.parametrize("model, version", UNSERVED)
def test_http_model_ready_is_404_as_tritons_not_found(served, model, version):
    url, _ = served
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/ready"
    resp = httpx.get(url + path, timeout=30)
    assert resp.status_code == 404 and repr(model) in resp.json()["error"]
    assert (
        thttp.InferenceServerClient(url.removeprefix("http://")).is_model_ready(model, version)
        is False
    )


@pytest.mark.parametrize("model, version", UNSERVED)
def test_grpc_model_ready_is_not_found_as_triton_answers(served, model, version):
    _, target = served
    client = tgrpc.InferenceServerClient(target)
    try:
        with pytest.raises(InferenceServerException) as err:
            client.is_model_ready(model, version)
        assert err.value.status() == "StatusCode.NOT_FOUND" and repr(model) in err.value.message()
        assert client.is_model_ready("mlp") is True and client.is_model_ready("mlp", "1") is True
    finally:
        client.close()
