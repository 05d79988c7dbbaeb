"""A requested model version, answered as Triton answers it (server src/common.cc
GetModelVersionFromString: std::stol, then > 0; src/http_server.cc model_regex_ takes
``/versions/([0-9]+)`` only, and maps INVALID_ARG to 400, NOT_FOUND to 404).

HTTP: ``01`` is version 1 (was 404); a version past int64 is 400 (was 404); ``abc`` and ``-1``
stay 404 ("Not Found" in Triton: no route matches). gRPC: ``abc``, ``-1`` and past int64 are
INVALID_ARGUMENT (were NOT_FOUND); ``01`` is version 1 (was NOT_FOUND). Over a real gateway and
model server, with tritonclient http and grpc."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from .conftest import gateway_on, running_model_server

HUGE = "9" * 20
ENDS = ("", "/ready", "/config", "/stats")


@pytest.fixture(scope="module")
def served(small_repo, tmp_path_factory):
    root = tmp_path_factory.mktemp("proto25-versions")
    with running_model_server(small_repo, root / "ms.log", "mlp") as replica:
        with gateway_on(replica, small_repo, root / "data") as (url, target):
            yield url, target


def _x():
    return np.random.default_rng(3).standard_normal((2, 784)).astype(np.float32)


def _http_infer(url, version):
    c = thttp.InferenceServerClient(url.removeprefix("http://"))
    inp = thttp.InferInput("input", [2, 784], "FP32")
    inp.set_data_from_numpy(_x())
    return c.infer("mlp", [inp], model_version=version)


@pytest.mark.parametrize("end", ENDS)
def test_http_leading_zeros_name_the_served_version(served, end):
    url, _ = served
    resp = httpx.get(f"{url}/v2/models/mlp/versions/001{end}", timeout=30)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("end", ENDS)
def test_http_version_past_int64_is_400_as_triton(served, end):
    url, _ = served
    resp = httpx.get(f"{url}/v2/models/mlp/versions/{HUGE}{end}", timeout=30)
    assert resp.status_code == 400 and "integral value" in resp.json()["error"]


@pytest.mark.parametrize("version", ["abc", "-1", "2", "1.0"])
@pytest.mark.parametrize("end", ENDS)
def test_http_other_versions_stay_404(served, version, end):
    url, _ = served
    resp = httpx.get(f"{url}/v2/models/mlp/versions/{version}{end}", timeout=30)
    assert resp.status_code == 404 and "mlp" in resp.json()["error"]


def test_http_infer_reads_versions_as_triton(served):
    url, _ = served
    ok = _http_infer(url, "01")
    assert ok.get_response()["model_version"] == "1"
    assert np.array_equal(ok.as_numpy("output"), _http_infer(url, "1").as_numpy("output"))
    for version, status in ((HUGE, 400), ("abc", 404), ("-1", 404)):
        resp = httpx.post(
            f"{url}/v2/models/mlp/versions/{version}/infer",
            json={
                "inputs": [
                    {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}
                ]
            },
            timeout=30,
        )
        assert resp.status_code == status and "error" in resp.json()


@pytest.mark.parametrize("version", ["abc", "-1", HUGE, "1x"])
def test_grpc_non_integral_version_is_invalid_argument(served, version):
    _, target = served
    c = tgrpc.InferenceServerClient(target)
    try:
        calls = [
            lambda: c.is_model_ready("mlp", version),
            lambda: c.get_model_metadata("mlp", version),
            lambda: c.get_model_config("mlp", version),
            lambda: c.get_inference_statistics("mlp", version),
        ]
        inp = tgrpc.InferInput("input", [2, 784], "FP32")
        inp.set_data_from_numpy(_x())
        calls.append(lambda: c.infer("mlp", [inp], model_version=version))
        for call in calls:
            with pytest.raises(InferenceServerException) as err:
                call()
            assert err.value.status() == "StatusCode.INVALID_ARGUMENT", err.value.message()
            assert "integral value" in err.value.message()
        with pytest.raises(InferenceServerException) as err:  # an integer not served
            c.get_model_metadata("mlp", "2")
        assert err.value.status() == "StatusCode.NOT_FOUND"
    finally:
        c.close()


def test_grpc_leading_zeros_name_the_served_version(served):
    _, target = served
    c = tgrpc.InferenceServerClient(target)
    try:
        assert c.is_model_ready("mlp", "01") is True
        assert c.get_model_metadata("mlp", "01").versions == ["1"]
        inp = tgrpc.InferInput("input", [2, 784], "FP32")
        inp.set_data_from_numpy(_x())
        got = c.infer("mlp", [inp], model_version="01")
        assert got.get_response().model_version == "1"
        want = c.infer("mlp", [inp]).as_numpy("output")
        assert np.array_equal(got.as_numpy("output"), want)
    finally:
        c.close()
