"""Async callbacks to loopback and private addresses are refused unless the operator allows them
(``async_queue.callback_allow_private``, off by default): a tenant's callback URL must not reach
the gateway's internal network. They were allowed by default (an SSRF on a shared gateway)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.support.loopback import LoopbackHTTPServer

from .conftest import serve_app

KEY, SECRET = "key-a", "whsec-a"
BODY = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.5] * 784}]}


class Receiver(LoopbackHTTPServer):
    """A callback receiver on a loopback port: ``arrived`` once a callback came."""

    def __init__(self):
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(204)
                self.end_headers()
                outer.arrived.set()

            def log_message(self, *args):
                pass

        self._listen(Handler)


@pytest.fixture
def receiver():
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


def _gateway(tmp_path, repo, model_server, **async_queue):
    settings = Settings.load(
        None,
        data_dir=tmp_path,
        repo=repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        tenants=[{"name": "a", "api_keys": [KEY], "callback_secret": SECRET}],
        async_queue=async_queue,
    )
    return serve_app(create_app(settings))


def _submit(c: httpx.Client, callback: str) -> httpx.Response:
    headers = {"x-api-key": KEY, "Prefer": "respond-async", "X-Tidegate-Callback": callback}
    return c.post("/v2/models/mlp/infer", json=BODY, headers=headers)


def test_by_default_a_callback_to_loopback_is_a_400_naming_the_setting(
    model_server, small_repo, tmp_path, receiver
):
    with _gateway(tmp_path, small_repo, model_server) as url:
        with httpx.Client(base_url=url, timeout=60) as c:
            resp = _submit(c, receiver.endpoint + "/cb")
            assert resp.status_code == 400, resp.text
            error = resp.json()["error"]
            assert "127.0.0.1" in error and "async_queue.callback_allow_private" in error, error
            assert "location" not in resp.headers  # nothing queued
            # the same for the private ranges
            for address in ("10.0.0.7", "192.168.1.1", "172.16.0.1", "[::1]", "[fd12::1]"):
                private = _submit(c, f"http://{address}:8080/cb")
                assert private.status_code == 400, (address, private.text)
                assert "callback_allow_private" in private.json()["error"], private.text
    assert not receiver.arrived.is_set()


def test_allowed_explicitly_a_callback_to_loopback_is_sent(
    model_server, small_repo, tmp_path, receiver
):
    with _gateway(tmp_path, small_repo, model_server, callback_allow_private=True) as url:
        with httpx.Client(base_url=url, timeout=60) as c:
            resp = _submit(c, receiver.endpoint + "/cb")
            assert resp.status_code == 202, resp.text
            assert receiver.arrived.wait(60), "the callback was not sent"
