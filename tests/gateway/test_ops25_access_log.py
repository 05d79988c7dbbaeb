"""A text access line cannot be forged or split by what a client sends: a path with %0A wrote a
second, made-up access line; %1B reached the terminal of whoever tailed the log as an escape
sequence; a tenant named "café 😀" split its field in two. Such values are now written quoted
and escaped (logfmt), the rest as before."""

from __future__ import annotations

import logging

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app

FORGED = "2026-12-01T00:00:00 method=POST path=/forged status=200"


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("ops25-access"),
        repo=small_repo,
        grpc_port=0,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        tenants=[{"name": "café 😀", "api_keys": ["kc"]}],
        access_log="text",
    )
    app = create_app(settings)
    with serve_app(app) as url:
        yield url, f"127.0.0.1:{app.state.gateway.grpc.port}"


def _lines(caplog, send) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tidegate.access"):
        send()
    return [r.getMessage() for r in caplog.records if r.name == "tidegate.access"]


def test_a_newline_in_the_path_does_not_write_a_line_of_its_own(gateway, caplog):
    gateway, _ = gateway
    path = "/v2/models/mlp%0A" + FORGED.replace(" ", "%20") + "/infer"
    lines = _lines(caplog, lambda: httpx.post(gateway + path, content=b"{}", timeout=30))
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith('method=POST path="/v2/models/mlp\\n2026-12-01T00:00:00 method=')
    assert "status=404" in lines[0]


def test_an_escape_sequence_does_not_reach_the_terminal(gateway, caplog):
    gateway, _ = gateway
    lines = _lines(caplog, lambda: httpx.get(gateway + "/v2/models/x%1B%5B31mRED", timeout=30))
    assert len(lines) == 1 and "\x1b" not in lines[0]
    assert 'path="/v2/models/x\\x1b[31mRED"' in lines[0]


def test_a_tenant_with_a_space_is_one_field_and_plain_values_are_as_before(gateway, caplog):
    gateway, _ = gateway
    body = {
        "inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]
    }

    def send():
        r = httpx.post(gateway + "/v2/models/mlp/infer", json=body, headers={"x-api-key": "kc"})
        assert r.status_code == 200, r.text

    [line] = _lines(caplog, send)
    assert line.startswith("method=POST path=/v2/models/mlp/infer status=200 ")
    assert ' tenant="café 😀" model=mlp route=vm ' in line


def test_a_grpc_model_name_with_a_newline_is_one_line_too(gateway, caplog):
    import numpy as np
    import tritonclient.grpc as tgrpc
    from tritonclient.utils import InferenceServerException

    _, target = gateway
    inp = tgrpc.InferInput("input", [1, 784], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 784), np.float32))

    def send():
        with pytest.raises(InferenceServerException):
            tgrpc.InferenceServerClient(target).infer("mlp\nfake line", [inp])

    [line] = _lines(caplog, send)
    assert "\n" not in line and ' model="mlp\\nfake line" ' in line
