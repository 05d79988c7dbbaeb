"""Compressed request bodies (tritonclient.http's ``request_compression_algorithm``: a gzip or
deflate ``Content-Encoding``), to the gateway and to the model server, and the clear refusals:
an unknown coding, bytes that do not inflate, a body that inflates past the limit."""

from __future__ import annotations

import gzip
import zlib

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as thttp

from gateway.app import create_app
from gateway.settings import Settings
from vmpool.artifact import load_artifact

from .conftest import serve_app


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("gw-gzip"),
        repo=small_repo,
        grpc_port=-1,
        max_body_mb=1.0,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    with serve_app(create_app(settings)) as url:
        yield url


def reference(repo, x):
    with torch.inference_mode():
        return load_artifact(repo, "mlp").load_module()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("server", ["gateway", "model_server"])
def test_tritonclient_compressed_request_and_response(
    request, small_repo, algorithm, binary, server
):
    url = request.getfixturevalue(server)
    x = np.random.default_rng(11).standard_normal((3, 784)).astype(np.float32)
    inp = thttp.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    client = thttp.InferenceServerClient(url.removeprefix("http://"))
    result = client.infer(
        "mlp",
        [inp],
        outputs=[thttp.InferRequestedOutput("output", binary_data=binary)],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
        request_id="z-1",
    )
    assert np.abs(result.as_numpy("output") - reference(small_repo, x)).max() <= 1e-5
    assert result.get_response()["id"] == "z-1"


def _post(url: str, body: bytes, encoding: str) -> httpx.Response:
    return httpx.post(
        url + "/v2/models/mlp/infer",
        content=body,
        headers={"content-encoding": encoding, "content-type": "application/json"},
    )


def json_body(rows: int) -> bytes:
    data = ",".join(["0.5"] * (rows * 784))
    return b'{"inputs":[{"name":"input","datatype":"FP32","shape":[%d,784],"data":[%s]}]}' % (
        rows,
        data.encode(),
    )


def test_raw_deflate_and_identity_are_taken(gateway):
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = raw.compress(json_body(1)) + raw.flush()
    assert _post(gateway, body, "deflate").status_code == 200
    assert _post(gateway, json_body(1), "identity").status_code == 200


@pytest.mark.parametrize("server", ["gateway", "model_server"])
def test_refusals_are_clear_4xx(request, server):
    url = request.getfixturevalue(server)
    r = _post(url, json_body(1), "br")
    assert r.status_code == 415 and "Content-Encoding 'br'" in r.json()["error"]
    r = _post(url, b"not gzip at all", "gzip")
    assert r.status_code == 400 and "not valid gzip" in r.json()["error"]
    r = _post(url, gzip.compress(json_body(1))[:-12], "gzip")  # cut short
    assert r.status_code == 400 and "truncated" in r.json()["error"]


def test_a_body_inflating_past_the_limit_is_413(gateway):
    bomb = gzip.compress(b" " * (8 << 20))  # 8 KiB on the wire, 8 MiB inflated; limit 1 MiB
    assert len(bomb) < 64 << 10
    r = _post(gateway, bomb, "gzip")
    assert r.status_code == 413 and "inflates past the limit" in r.json()["error"]
    # and the gateway goes on serving
    assert _post(gateway, gzip.compress(json_body(2)), "gzip").status_code == 200


def test_a_large_compressed_json_body_on_the_app_path(gateway, small_repo):
    # over the fast lane's 64 KiB even compressed: read by the ASGI endpoint, inflated alike
    x = np.random.default_rng(12).standard_normal((24, 784)).astype(np.float32)
    inp = thttp.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    body, _ = thttp.InferenceServerClient.generate_request_body([inp])
    assert len(gzip.compress(body)) > 64 << 10
    client = thttp.InferenceServerClient(gateway.removeprefix("http://"))
    got = client.infer("mlp", [inp], request_compression_algorithm="gzip").as_numpy("output")
    assert np.abs(got - reference(small_repo, x)).max() <= 1e-5


@pytest.mark.parametrize("server", ["gateway", "model_server"])
@pytest.mark.parametrize("tail", ["garbage", "second member"])
def test_bytes_after_the_compressed_stream_are_a_clear_400(request, server, tail):
    """They were dropped silently: the body was its first stream alone (a second gzip member
    read as JSON cut short, or junk behind a whole body answered 200)."""
    url = request.getfixturevalue(server)
    body = json_body(1)
    if tail == "garbage":
        sent = gzip.compress(body) + b"junk"
    else:
        sent = gzip.compress(body[:100]) + gzip.compress(body[100:])
    r = _post(url, sent, "gzip")
    assert r.status_code == 400 and "bytes after its gzip data" in r.json()["error"], r.text
    assert _post(url, gzip.compress(body), "gzip").status_code == 200
