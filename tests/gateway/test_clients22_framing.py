"""Binary bodies whose framing is wrong say which bytes were read as the JSON header: tensor bytes
sent without ``Inference-Header-Content-Length``, or a length that reaches into them, answered
only "malformed JSON: str is not valid UTF-8: surrogates not allowed" (a 400, but no hint)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app

X = np.random.default_rng(5).standard_normal((1, 784)).astype(np.float32)
HEAD = json.dumps(
    {
        "inputs": [
            {
                "name": "input",
                "shape": [1, 784],
                "datatype": "FP32",
                "parameters": {"binary_data_size": X.nbytes},
            }
        ]
    }
).encode()


@pytest.fixture(scope="module")
def servers(model_server, small_repo, tmp_path_factory):
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("clients22-framing"),
        repo=small_repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    with serve_app(create_app(settings)) as url:
        yield {"gateway": url, "model_server": model_server}


@pytest.mark.parametrize("server", ["gateway", "model_server"])
@pytest.mark.parametrize(
    "header_length,says",
    [
        (None, "binary tensors need the Inference-Header-Content-Length header"),
        (len(HEAD) + 40, f"the body's first {len(HEAD) + 40} bytes, as Inference-Header-"),
    ],
    ids=["no header length", "a length into the tensor bytes"],
)
def test_misframed_binary_bodies_say_which_bytes_were_read(servers, server, header_length, says):
    headers = (
        {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
    )
    r = httpx.post(
        servers[server] + "/v2/models/mlp/infer", content=HEAD + X.tobytes(), headers=headers
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error.startswith("malformed JSON") and says in error, error
    good = {"Inference-Header-Content-Length": str(len(HEAD))}
    r = httpx.post(
        servers[server] + "/v2/models/mlp/infer", content=HEAD + X.tobytes(), headers=good
    )
    assert r.status_code == 200, r.text


def test_plain_malformed_json_gets_no_binary_hint(servers):
    r = httpx.post(servers["gateway"] + "/v2/models/mlp/infer", content=b"{oops")
    assert r.status_code == 400
    assert "Inference-Header-Content-Length" not in r.json()["error"]
