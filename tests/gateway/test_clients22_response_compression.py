"""Compressed answers: tritonclient.http's ``response_compression_algorithm`` (an
``Accept-Encoding`` of gzip or deflate) is answered in that ``Content-Encoding``, as Triton does,
by the gateway and by the model server; before, every answer went uncompressed. The
``Inference-Header-Content-Length`` still counts the inflated JSON header, so every real client
(tritonclient sync and aio, KServe's httpx) reads the same tensors as from a plain answer."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import zlib

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as thttp
import tritonclient.http.aio as thttp_aio

from ops.cli import main as cli
from vmpool.codec_encoding import MIN_BYTES, response_coding, worth_compressing

from .conftest import gateway_before_replica, running_model_server

WIDTH = 8192  # one row's answer: 32 KiB of FP32, past MIN_BYTES
# a ReLU's output at one decimal: half zeros, compressible as many real activations are
X = np.maximum(np.random.default_rng(11).standard_normal((2, WIDTH)).round(1), 0).astype(np.float32)
NOISE = np.random.default_rng(12).standard_normal((2, WIDTH)).astype(np.float32)


class Wide(torch.nn.Module):
    def forward(self, x):
        return x * 2


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("clients22-gzip")
    batch = torch.export.Dim("batch", min=1, max=8)
    width = torch.export.Dim("width", min=2, max=WIDTH)
    dims = ({0: batch, 1: width},)
    program = torch.export.export(Wide(), (torch.ones(2, WIDTH),), dynamic_shapes=dims)
    torch.export.save(program, str(root / "program.pt2"))
    assert (
        cli(["export", str(root / "program.pt2"), "--name", "wide", "--out", str(root / "r")]) == 0
    )
    return root / "r"


@pytest.fixture(scope="module")
def servers(repo, tmp_path_factory):
    """{"gateway": URL, "model_server": URL}."""
    root = tmp_path_factory.mktemp("clients22-gzip-run")
    with gateway_before_replica(repo, root) as (url, _):
        with running_model_server(repo, root / "ms2.log") as replica:
            yield {"gateway": url, "model_server": replica}


@pytest.mark.parametrize("server", ["gateway", "model_server"])
@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_asks_for_a_compressed_answer(servers, server, algorithm, binary):
    client = thttp.InferenceServerClient(servers[server].removeprefix("http://"))
    inp = thttp.InferInput("x", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    out = thttp.InferRequestedOutput("output", binary_data=binary)
    try:
        result = client.infer(
            "wide", [inp], outputs=[out], response_compression_algorithm=algorithm
        )
    finally:
        client.close()
    np.testing.assert_array_equal(result.as_numpy("output"), X * 2)


def _raw(url: str, accept: str, binary: bool = True, x: np.ndarray = X) -> httpx.Response:
    entry = {"name": "x", "shape": list(x.shape), "datatype": "FP32"}
    head = json.dumps(
        {
            "inputs": [{**entry, "parameters": {"binary_data_size": x.nbytes}}],
            "parameters": {"binary_data_output": binary},
        }
    ).encode()
    # (no decoding by the client: the bytes on the wire are what is checked)
    with httpx.Client(headers={"Accept-Encoding": accept}) as c:
        request = c.build_request(
            "POST",
            url + "/v2/models/wide/infer",
            content=head + x.tobytes(),
            headers={"Inference-Header-Content-Length": str(len(head))},
        )
        r = c.send(request, stream=True)
        r.read_raw = b"".join(r.iter_raw())  # type: ignore[attr-defined]
        r.close()
        return r


@pytest.mark.parametrize("server", ["gateway", "model_server"])
def test_the_wire_carries_the_coding_and_the_header_counts_the_inflated_bytes(servers, server):
    url = servers[server]
    for accept, coding, inflate in [
        ("gzip", "gzip", gzip.decompress),
        ("deflate", "deflate", zlib.decompress),
        ("br;q=1, deflate;q=0.5", "deflate", zlib.decompress),
        ("*", "gzip", gzip.decompress),
    ]:
        r = _raw(url, accept)
        assert r.status_code == 200 and r.headers.get("content-encoding") == coding, accept
        body = inflate(r.read_raw)
        length = int(r.headers["inference-header-content-length"])
        header = json.loads(body[:length])
        assert header["outputs"][0]["parameters"]["binary_data_size"] == X.nbytes
        np.testing.assert_array_equal(np.frombuffer(body[length:], np.float32), (X * 2).ravel())
    for accept in ["gzip;q=0", "br", "identity", "gzip;q=zero"]:
        r = _raw(url, accept)
        assert r.status_code == 200 and "content-encoding" not in r.headers, accept
        assert len(r.read_raw) > X.nbytes


@pytest.mark.parametrize("server", ["gateway", "model_server"])
def test_an_answer_that_would_not_shrink_goes_plain_but_its_json_is_compressed(servers, server):
    """Random FP32 bytes shrink ~7 % for ~10 ms a MiB of a core: not coded for the httpx and
    aiohttp clients that accept gzip on every request without asking; as JSON text they are."""
    assert not worth_compressing(NOISE.tobytes()) and worth_compressing(X.tobytes())
    r = _raw(servers[server], "gzip", binary=True, x=NOISE)
    assert r.status_code == 200 and "content-encoding" not in r.headers
    length = int(r.headers["inference-header-content-length"])
    got = np.frombuffer(r.read_raw[length:], np.float32)
    np.testing.assert_array_equal(got, (NOISE * 2).ravel())
    r = _raw(servers[server], "gzip", binary=False, x=NOISE)
    assert r.status_code == 200 and r.headers.get("content-encoding") == "gzip"
    assert json.loads(gzip.decompress(r.read_raw))["outputs"][0]["shape"] == list(NOISE.shape)


def test_a_small_answer_or_an_error_goes_uncompressed(servers):
    url = servers["gateway"] + "/v2/models/wide/infer"
    gz = {"Accept-Encoding": "gzip"}
    small = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
    r = httpx.post(url, json={"inputs": [small]}, headers=gz)
    assert r.status_code == 200 and len(r.content) < MIN_BYTES
    assert "content-encoding" not in r.headers
    assert r.json()["outputs"][0]["data"] == [2, 4, 6, 8]
    wrong = {**small, "datatype": "FP64"}
    r = httpx.post(url, json={"inputs": [wrong]}, headers=gz)
    assert r.status_code == 400 and "content-encoding" not in r.headers


def test_tritonclient_aio_reads_a_compressed_answer(servers):
    async def run():
        client = thttp_aio.InferenceServerClient(servers["gateway"].removeprefix("http://"))
        inp = thttp.InferInput("x", list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=False)
        try:
            for algorithm in ("gzip", "deflate"):
                result = await client.infer("wide", [inp], response_compression_algorithm=algorithm)
                np.testing.assert_array_equal(result.as_numpy("output"), X * 2)
        finally:
            await client.close()

    asyncio.run(run())


KSERVE = """
import asyncio, sys
import numpy as np
from kserve import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest

async def run(url):
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))  # httpx: gzip accepted
    x = np.arange(2 * 8192, dtype=np.float32).reshape(2, 8192)
    try:
        for binary in (True, False):
            inp = InferInput("x", [2, 8192], "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            answer = await client.infer(url, InferRequest("wide", [inp]), model_name="wide")
            assert np.array_equal(answer.outputs[0].as_numpy(), x * 2), binary
    finally:
        await client.close()
    print("ok")

asyncio.run(run(sys.argv[1]))
"""


def test_kserve_rest_client_reads_compressed_answers(servers):
    proc = subprocess.run(
        [sys.executable, "-c", KSERVE, servers["gateway"]],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize(
    "header,coding",
    [
        (None, None),
        ("", None),
        ("gzip", "gzip"),
        ("GZip ; q=0.1", "gzip"),
        ("deflate, gzip", "gzip"),
        ("gzip;q=0, deflate", "deflate"),
        ("*;q=0", None),
        ("*, gzip;q=0", "deflate"),
        ("identity", None),
        ("br, zstd", None),
        ("x" * 100_000, None),
    ],
)
def test_accept_encoding_is_read_as_rfc_9110_says(header, coding):
    assert response_coding(header) == coding
