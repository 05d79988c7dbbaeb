"""Binary bodies forwarded as they came (vmpool/forward.py), against a recording replica on
loopback: the replica gets the client's own bytes and the client gets the replica's, where that
is the answer the gateway would have built; everything else is decoded and re-encoded."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from vmpool.codec import decode_request, decode_response, encode_request, encode_response

from .conftest import serve_app

MLP = "/v2/models/mlp/infer"


class Replica:
    """What the recording replica saw and how it answers."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.model_version = "1"
        self.truncate = 0  # bytes cut off the answer's end (a malformed answer)


def _handler(replica: Replica):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # the pool's health checks
            answer = b'{"live":true,"ready":true}'
            self.send_response(200)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            replica.bodies.append(body)
            replica.headers.append({k.lower(): v for k, v in self.headers.items()})
            hl = self.headers.get("inference-header-content-length")
            req = decode_request(body, int(hl) if hl else None)
            rows = next(iter(req.inputs.values())).shape[0]
            outputs = {"output": np.arange(rows * 10, dtype=np.float32).reshape(rows, 10)}
            answer, length = encode_response(
                model_name="mlp",
                model_version=replica.model_version,
                request_id=req.id,
                outputs=outputs,
                requested=req.outputs,
                binary_output=req.binary_output,
            )
            answer = answer[: len(answer) - replica.truncate]
            self.send_response(200)
            self.send_header("content-length", str(len(answer)))
            if length is not None:
                self.send_header("inference-header-content-length", str(length))
            self.end_headers()
            self.wfile.write(answer)

    return Handler


@contextmanager
def recording_replica():
    replica = Replica()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(replica))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", replica
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def forwarding(small_repo, tmp_path_factory):
    with recording_replica() as (replica_url, replica):
        settings = Settings.load(
            None,
            data_dir=tmp_path_factory.mktemp("forward-data"),
            repo=small_repo,
            vm={"provisioner": "static", "urls": [replica_url]},
            burst={"enabled": False},
        )
        with serve_app(create_app(settings)) as url:
            yield url, replica


def _post(url: str, body: bytes, header_length: int | None) -> httpx.Response:
    headers = {"content-type": "application/octet-stream"}
    if header_length is not None:
        headers["inference-header-content-length"] = str(header_length)
    return httpx.post(url + MLP, content=body, headers=headers, timeout=30)


def _binary_body(request_id: str | None = None) -> tuple[bytes, int]:
    x = np.random.default_rng(0).standard_normal((2, 784)).astype(np.float32)
    return encode_request({"input": x}, binary_output=True, request_id=request_id)


def test_binary_request_travels_as_its_bytes_both_ways(forwarding):
    url, replica = forwarding
    replica.model_version, replica.truncate = "1", 0
    body, hl = _binary_body(request_id="client-7")
    resp = _post(url, body, hl)
    assert resp.status_code == 200, resp.text
    assert replica.bodies[-1] == body  # the client's bytes, not a re-encoded request
    assert replica.headers[-1]["x-request-id"] == resp.headers["x-request-id"]
    answer = decode_response(resp.content, int(resp.headers["inference-header-content-length"]))
    assert answer.id == "client-7" and answer.model_version == "1"
    np.testing.assert_array_equal(
        answer.outputs["output"], np.arange(20, dtype=np.float32).reshape(2, 10)
    )
    assert resp.headers["x-tidegate-path"] == "vm"


def test_named_binary_outputs_without_parameters_are_forwarded(forwarding):
    """As tritonclient.http sends them: each output binary_data true, no request parameters."""
    url, replica = forwarding
    replica.model_version, replica.truncate = "1", 0
    x = np.ones((1, 784), np.float32)
    body, hl = encode_request({"input": x}, outputs=["output"], binary_output=True)
    assert b'"parameters":{"binary_data_output"' not in body[:hl]
    resp = _post(url, body, hl)
    assert resp.status_code == 200, resp.text
    assert replica.bodies[-1] == body
    answer = decode_response(resp.content, int(resp.headers["inference-header-content-length"]))
    assert answer.outputs["output"].tolist() == [list(range(10))]


def test_json_outputs_are_re_encoded(forwarding):
    url, replica = forwarding
    replica.model_version, replica.truncate = "1", 0
    x = np.ones((1, 784), np.float32)
    body, hl = encode_request({"input": x}, binary_output=False)
    resp = _post(url, body, hl)
    assert resp.status_code == 200, resp.text
    sent = replica.bodies[-1]
    assert sent != body  # the gateway asked the replica for binary outputs
    header = json.loads(sent[: int(replica.headers[-1]["inference-header-content-length"])])
    assert header["parameters"] == {"binary_data_output": True}
    assert header["id"] == resp.headers["x-request-id"]
    assert resp.json()["outputs"][0]["data"] == list(range(10))


def test_an_answer_of_another_version_is_re_encoded_as_the_gateways_model(forwarding):
    url, replica = forwarding
    replica.model_version, replica.truncate = "7", 0
    body, hl = _binary_body()
    resp = _post(url, body, hl)
    assert resp.status_code == 200, resp.text
    answer = decode_response(resp.content, int(resp.headers["inference-header-content-length"]))
    assert answer.model_version == "1"
    assert answer.outputs["output"].shape == (2, 10)


def test_a_malformed_forwarded_answer_is_refused(forwarding):
    url, replica = forwarding
    replica.model_version, replica.truncate = "1", 4
    try:
        resp = _post(url, *_binary_body())
    finally:
        replica.truncate = 0
    assert resp.status_code == 503  # as for any replica that failed (gateway/execute.py)
    assert "malformed" in resp.json()["error"]
    assert resp.headers["retry-after"] == "1"  # (as gRPC's UNAVAILABLE carries retry-after)


def test_a_bad_request_is_refused_before_any_replica_sees_it(forwarding):
    url, replica = forwarding
    body, hl = _binary_body()
    seen = len(replica.bodies)
    resp = _post(url, body[:-4], hl)  # 4 bytes short of its binary_data_size
    assert resp.status_code == 400
    assert len(replica.bodies) == seen
