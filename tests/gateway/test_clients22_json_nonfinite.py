"""NaN and the infinities in JSON *outputs*, read back by the real clients.

JSON has no NaN or infinity. Triton writes the ``NaN``, ``Infinity`` and ``-Infinity`` tokens;
KServe's server writes ``null``. The two real clients disagree: tritonclient (python-rapidjson)
reads both the tokens and null (as NaN), but KServe's REST client parses answers with orjson,
which refuses the tokens: the whole answer fails ("Unrecognized request format"). So the gateway
writes null (clients of both kinds read the answer; an infinity arrives as NaN, as from KServe),
and binary outputs carry every value exactly. These tests hold that choice: an answer with a
non-finite value must stay readable by both clients."""

from __future__ import annotations

import json

import orjson
import subprocess
import sys

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as thttp
import tritonclient.http.aio as thttp_aio

from ops.cli import main as cli

from .conftest import gateway_before_replica

TYPES = [("h", "FP16", np.float16), ("f", "FP32", np.float32), ("d", "FP64", np.float64)]
ROW = [1.5, np.nan, np.inf, -np.inf]


class Doubles(torch.nn.Module):
    def forward(self, h, f, d):
        return h * 2, f * 2, d * 2


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(HTTP base URL, gRPC target) of a gateway serving ``Doubles`` as "doubles"."""
    root = tmp_path_factory.mktemp("json-nonfinite")
    xs = tuple(torch.ones(2, 4, dtype=getattr(torch, np.dtype(t).name)) for _, _, t in TYPES)
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(Doubles(), xs, dynamic_shapes=tuple({0: batch} for _ in xs))
    torch.export.save(program, str(root / "program.pt2"))
    repo = root / "repo"
    assert cli(["export", str(root / "program.pt2"), "--name", "doubles", "--out", str(repo)]) == 0
    with gateway_before_replica(repo, root) as urls:
        yield urls


def sample() -> list[np.ndarray]:
    return [np.array([ROW, [0.25, 2.0, -3.0, 4.0]], dtype=t) for _, _, t in TYPES]


def http_request(xs, binary_in: bool, binary_out: bool):
    inputs = []
    for (name, datatype, _), x in zip(TYPES, xs, strict=True):
        inp = thttp.InferInput(name, list(x.shape), datatype)
        inp.set_data_from_numpy(x, binary_data=binary_in)
        inputs.append(inp)
    outputs = [thttp.InferRequestedOutput(f"output__{i}", binary_data=binary_out) for i in range(3)]
    return inputs, outputs


def assert_doubled(result_as_numpy, xs, exact: bool) -> None:
    """Each output is its input doubled; in JSON (not ``exact``) a non-finite value is NaN."""
    for i, x in enumerate(xs):
        got = result_as_numpy(f"output__{i}")
        want = x * 2
        if not exact:
            want = np.where(np.isfinite(want), want, np.nan).astype(want.dtype)
        assert got.dtype == want.dtype, i
        np.testing.assert_array_equal(got, want)  # (NaN equals NaN here)


@pytest.mark.parametrize("binary_in", [True, False])
def test_tritonclient_reads_nonfinite_values_in_json_and_binary_outputs(served, binary_in):
    url, _ = served
    xs = sample()
    client = thttp.InferenceServerClient(url.removeprefix("http://"))
    try:
        for binary_out in (True, False):
            inputs, outputs = http_request(xs, binary_in, binary_out)
            result = client.infer("doubles", inputs, outputs=outputs)
            assert_doubled(result.as_numpy, xs, exact=binary_out)
    finally:
        client.close()


def test_the_json_answer_is_strict_json(served):
    url, _ = served
    xs = sample()
    body = {
        "inputs": [
            {"name": n, "shape": list(x.shape), "datatype": d, "data": x.ravel().tolist()}
            for (n, d, _), x in zip(TYPES, xs, strict=True)
        ]
    }
    r = httpx.post(url + "/v2/models/doubles/infer", content=json.dumps(body), timeout=60)
    assert r.status_code == 200, r.text
    for out in orjson.loads(r.content)["outputs"]:  # (orjson refuses NaN and Infinity)
        assert out["data"][:4] == [3.0, None, None, None], out


def test_tritonclient_aio_and_gzip_json_outputs(served):
    url, _ = served
    xs = sample()

    async def run():
        client = thttp_aio.InferenceServerClient(url.removeprefix("http://"))
        try:
            inputs, outputs = http_request(xs, True, False)
            return await client.infer(
                "doubles", inputs, outputs=outputs, response_compression_algorithm="gzip"
            )
        finally:
            await client.close()

    import asyncio

    assert_doubled(asyncio.run(run()).as_numpy, xs, exact=False)


KSERVE = """
import asyncio, sys
import numpy as np
from kserve import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

async def run(url, json_in):
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    # JSON outputs; inputs binary, or JSON where KServe writes them (not FP16; NaN, inf as null)
    row = [1.5, np.nan, np.inf, -np.inf]
    inputs = []
    for name, datatype, dtype in (("h", "FP16", "float16"), ("f", "FP32", "float32"),
                                  ("d", "FP64", "float64")):
        inp = InferInput(name, [1, 4], datatype)
        binary = not json_in or datatype == "FP16"
        inp.set_data_from_numpy(np.array([row], dtype=dtype), binary_data=binary)
        inputs.append(inp)
    try:
        asked = [RequestedOutput(f"output__{i}", {"binary_data": False}) for i in range(3)]
        req = InferRequest("doubles", inputs, request_outputs=asked)
        answer = await client.infer(url, req, model_name="doubles")
    finally:
        await client.close()
    for o in answer.outputs:
        print(o.name, o.as_numpy().ravel().tolist())

asyncio.run(run(sys.argv[1], sys.argv[2] == "json"))
"""


@pytest.mark.parametrize("inputs", ["binary", "json"])
def test_kserve_rest_client_reads_nonfinite_values_in_json_outputs(served, inputs):
    """With JSON inputs KServe sends NaN and infinities as null: read as NaN (was a 400)."""
    url, _ = served
    proc = subprocess.run(
        [sys.executable, "-c", KSERVE, url, inputs], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    lines = sorted(proc.stdout.split("\n")[:3])
    assert lines == [f"output__{i} [3.0, nan, nan, nan]" for i in range(3)], proc.stdout
