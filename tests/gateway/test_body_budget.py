"""``max_inflight_body_mb`` holds on every path: a slowly sent body holds its bytes from its first
byte, and a body past the budget gets 503 + Retry-After and ``{"error": ...}`` (fast lane, the
app's ASGI path, gRPC), counted in ``tidegate_requests_total``.

Before: bodies up to 64 KiB were not counted at all; with the budget at 0.08 MB and one client
holding 59,999 of 60,000 body bytes, a second 60 KB body was accepted."""

from __future__ import annotations

import json
import socket
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app

BODY_BYTES = 60_000
LARGE = 70_000  # a large body (over 64 KiB) that fits the 78,643 bytes large bodies may use
MLP = "/v2/models/mlp/infer"


@pytest.fixture(scope="module")
def tight_gateway(model_server, small_repo, tmp_path_factory):
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("budget-data"),
        repo=small_repo,
        grpc_port=0,
        max_inflight_body_mb=0.08,  # 83,886 bytes: one 60 KB body fits, two do not
        body_timeout_s=60.0,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    app = create_app(settings)
    with serve_app(app) as url:
        yield url, app.state.gateway


def _hold(url: str, budget) -> socket.socket:
    """A client that sends all but the last byte of a 60,000-byte body and waits."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST {MLP} HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY_BYTES}\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    sock.sendall(head.encode() + b"\0" * (BODY_BYTES - 1))
    deadline = time.monotonic() + 10  # (the server takes the bytes on its own thread)
    while budget.in_flight_bytes < BODY_BYTES and time.monotonic() < deadline:
        time.sleep(0.01)
    return sock


def _grpc_input(rows: int) -> tgrpc.InferInput:
    x = tgrpc.InferInput("input", [rows, 784], "FP32")
    x.set_data_from_numpy(np.zeros((rows, 784), np.float32))  # 25,088 bytes at 8 rows
    return x


def _refusals(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tidegate_requests_total{") and 'code="503"' in line
    )


def test_a_body_past_the_budget_is_refused_on_every_path(tight_gateway):
    url, state = tight_gateway
    grpc_client = tgrpc.InferenceServerClient(f"127.0.0.1:{state.grpc.port}")
    refused_before = _refusals(url)
    hog = _hold(url, state.body_budget)
    try:
        second = b"\0" * BODY_BYTES
        headers = {"content-type": "application/octet-stream"}
        for path in (MLP, MLP + "?via=asgi"):  # the fast lane, then the app's ASGI path
            r = httpx.post(url + path, content=second, headers=headers)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.headers["retry-after"] and "retry shortly" in r.json()["error"]
        with pytest.raises(InferenceServerException) as caught:
            grpc_client.infer("mlp", [_grpc_input(8)])
        assert caught.value.status() == "StatusCode.UNAVAILABLE", caught.value
        assert _refusals(url) - refused_before == 3
    finally:
        hog.close()
    # the budget is back once the slow client has gone
    deadline = time.monotonic() + 10
    while state.body_budget.in_flight_bytes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state.body_budget.in_flight_bytes == 0
    assert grpc_client.infer("mlp", [_grpc_input(8)]).as_numpy("output").shape == (8, 10)
    data = {
        "inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.5] * 784}]
    }
    body = json.dumps(data).encode()
    for path in (MLP, MLP + "?via=asgi"):
        assert httpx.post(url + path, content=body).status_code == 200


def test_small_requests_are_served_beside_a_body_that_fits(tight_gateway):
    """The budget refuses what does not fit, not everything: a small call beside the held body
    is answered."""
    url, state = tight_gateway
    hog = _hold(url, state.body_budget)
    try:
        data = {
            "inputs": [
                {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.5] * 784}
            ]
        }
        r = httpx.post(url + MLP, content=json.dumps(data).encode())
        assert r.status_code == 200, r.text
    finally:
        hog.close()


def test_bodies_to_other_routes_are_bounded_too(tight_gateway):
    """An admin or repository call's body counts as an infer body does (FastAPI read any body
    whole, at any pace, before the route checked its key)."""
    url, state = tight_gateway
    hog = _hold(url, state.body_budget)
    try:
        big = b'{"routing_policy": "threshold", "pad": "' + b" " * BODY_BYTES + b'"}'
        for method, path in (("PUT", "/admin/policy"), ("POST", "/v2/repository/index")):
            r = httpx.request(method, url + path, content=big)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.headers["retry-after"] and "retry shortly" in r.json()["error"]
    finally:
        hog.close()
    deadline = time.monotonic() + 10
    while state.body_budget.in_flight_bytes and time.monotonic() < deadline:
        time.sleep(0.01)
    # the same calls, once the budget is free, reach their routes (open: no tenants, no key)
    index = httpx.post(url + "/v2/repository/index", content=big)
    assert index.status_code == 200 and "mlp" in {row["name"] for row in index.json()}


def _declare(url: str, declared: int, sent: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST {MLP} HTTP/1.1\r\nHost: t\r\nContent-Length: {declared}\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    sock.sendall(head.encode() + sent)
    return sock


def test_a_declared_length_that_does_not_come_holds_only_what_came(tight_gateway):
    """A large body counts by the bytes it has sent. Before, its declared length was taken from
    the budget before its first byte: clients that declared large bodies and sent one byte held
    the whole budget, and every other request got 503 until their body timeout (60 s)."""
    url, state = tight_gateway
    idlers = [_declare(url, LARGE, b"\0") for _ in range(3)]
    try:
        deadline = time.monotonic() + 10  # (the server reads the bytes on its own loop)
        while state.body_budget.in_flight_bytes < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state.body_budget.in_flight_bytes == 3
        data = {
            "inputs": [
                {"name": "input", "shape": [8, 784], "datatype": "FP32", "data": [0.5] * 6272}
            ]
        }
        for path in (MLP, MLP + "?via=asgi"):
            r = httpx.post(url + path, content=json.dumps(data).encode())
            assert r.status_code == 200, (path, r.status_code, r.text)
        large = httpx.post(url + MLP, content=b"\0" * LARGE)  # read whole, then a bad body
        assert large.status_code == 400, large.text
        # a declared length that cannot fit beside what has come is still refused up front
        r = httpx.post(url + MLP, content=b"\0" * (LARGE + 9000))
        assert r.status_code == 503 and "retry shortly" in r.json()["error"], r.text
    finally:
        for sock in idlers:
            sock.close()
