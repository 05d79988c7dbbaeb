"""NaN and infinities in JSON tensors, as the real Triton client sends them: ``tritonclient``'s
JSON body comes from Python's ``json.dumps``, which writes the NaN, Infinity and -Infinity
tokens, and Triton reads them. This gateway (and its model server) answered 400 "malformed
JSON" to such a body. A value the datatype cannot hold is still a 400."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as thttp

from vmpool.artifact import load_artifact
from vmpool.codec import CodecError, decode_request
from vmpool.export import export_zoo

from .conftest import gateway_before_replica


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    root = tmp_path_factory.mktemp("nonfinite")
    export_zoo("mlp", root / "repo")
    with gateway_before_replica(root / "repo", root) as (url, _):
        yield url, load_artifact(root / "repo", "mlp").load_module()


def _infer(url: str, x: np.ndarray) -> np.ndarray:
    client = thttp.InferenceServerClient(url.removeprefix("http://"))
    inp = thttp.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)  # JSON: NaN / Infinity tokens
    out = thttp.InferRequestedOutput("output", binary_data=True)
    try:
        return client.infer("mlp", [inp], outputs=[out]).as_numpy("output")
    finally:
        client.close()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_tritonclient_json_with_a_nonfinite_value_is_answered_as_the_model_computes(gateway, bad):
    url, module = gateway
    x = np.random.default_rng(3).standard_normal((2, 784)).astype(np.float32)
    x[1, 5] = bad  # the second row only: the first must come back exact
    got = _infer(url, x)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.isnan(got[1]), np.isnan(want[1]))
    assert not np.isfinite(got[1]).all()


def test_a_value_past_the_datatype_is_still_refused(gateway):
    url, _ = gateway
    body = '{"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [1e39'
    body += ", 0.0" * 783 + "]}]}"
    r = httpx.post(url + "/v2/models/mlp/infer", content=body, timeout=60)
    assert r.status_code == 400 and "out of range" in r.json()["error"], r.text


def test_codec_reads_the_tokens_and_keeps_refusing_what_is_not_json():
    head = b'{"inputs": [{"name": "x", "shape": [4], "datatype": "FP16", "data": '
    req = decode_request(head + b"[NaN, Infinity, -Infinity, 1.5]}]}", None)
    x = req.inputs["x"]
    assert x.dtype == np.float16 and np.isnan(x[0]) and x[1] == np.inf and x[2] == -np.inf
    assert x[3] == 1.5
    with pytest.raises(CodecError, match="out of range"):
        decode_request(head + b"[NaN, 1e6, 0, 0]}]}", None)  # 1e6: past FP16's range
    with pytest.raises(CodecError, match="malformed JSON"):
        decode_request(head + b"[NaN, Infinity, 0, 0]", None)  # cut short: still not JSON
    with pytest.raises(CodecError, match="malformed JSON"):
        decode_request(head + b"[nan, 0, 0, 0]}]}", None)  # not a JSON token in any dialect
    with pytest.raises(CodecError, match="malformed JSON"):  # what orjson refuses, NaN or not
        decode_request(b'{"id": "\\ud800", ' + head[1:] + b"[NaN, 0, 0, 0]}]}", None)
