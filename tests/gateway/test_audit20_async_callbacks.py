"""Callbacks as a client developer meets them: where they may go, and what one that hangs costs.

A real gateway (``create_app`` on loopback) and real callback receivers on loopback ports.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from gateway.app import create_app
from gateway.asyncq.callback import check_callback_url
from gateway.errors import BadRequest
from gateway.settings import Settings
from tests.support.loopback import LoopbackHTTPServer

from .conftest import serve_app

KEY, SECRET = "key-a", "whsec-a"
BODY = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.5] * 784}]}


class HangingReceiver(LoopbackHTTPServer):
    """Takes each callback POST and answers nothing until ``release`` is set."""

    def __init__(self):
        self.arrived = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.arrived.set()
                outer.release.wait(120)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._listen(Handler)


def _gateway(data, repo, model_server, **async_queue):
    settings = Settings.load(
        None,
        data_dir=data,
        repo=repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        tenants=[{"name": "a", "api_keys": [KEY], "callback_secret": SECRET}],
        async_queue=async_queue,
    )
    return serve_app(create_app(settings))


def _submit(url, callback=None):
    headers = {"x-api-key": KEY, "Prefer": "respond-async"}
    if callback is not None:
        headers["X-Tidegate-Callback"] = callback
    return httpx.post(url + "/v2/models/mlp/infer", json=BODY, headers=headers)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # AWS, GCP, Azure instance metadata
        "http://[fd00:ec2::254]/latest/meta-data/",  # AWS IMDS over IPv6
        "http://[::ffff:169.254.169.254]/",  # the same, IPv4-mapped
        "http://100.100.100.200/latest/meta-data/",  # Alibaba Cloud metadata
        "http://[fe80::1]/",
        "http://0.0.0.0:8080/",
        "http://224.0.0.1/",
        "http://2852039166/",  # 169.254.169.254 in the forms resolvers still take
        "http://0xa9fea9fe/",
        "http://169.254.169.254./",
        "http://[fe80::1%25eth0]/",
    ],
)
def test_a_callback_to_a_metadata_or_link_local_address_is_refused_at_submit(url):
    with pytest.raises(BadRequest, match="callback URL"):
        check_callback_url(url)


def test_private_addresses_are_refused_when_the_gateway_says_so():
    assert (
        check_callback_url("http://127.0.0.1:9/cb", allow_private=True) == "http://127.0.0.1:9/cb"
    )
    with pytest.raises(BadRequest, match="private"):  # the helper's default is the safe one
        check_callback_url("http://127.0.0.1:9/cb")
    for url in ("http://127.0.0.1:9/cb", "http://10.0.0.5/cb", "http://[::1]/cb"):
        with pytest.raises(BadRequest, match="private"):
            check_callback_url(url, allow_private=False)


def test_the_metadata_address_is_a_400_over_http(model_server, small_repo, tmp_path):
    with _gateway(tmp_path, small_repo, model_server) as url:
        resp = _submit(url, "http://169.254.169.254/latest/meta-data/")
        assert resp.status_code == 400, resp.text
        assert "169.254.169.254" in resp.json()["error"]


class _Records(logging.Handler):
    """Sets ``seen`` once a record's message contains ``needle``."""

    def __init__(self, needle: str):
        super().__init__()
        self.needle, self.seen = needle, threading.Event()

    def emit(self, record):
        if self.needle in record.getMessage():
            self.seen.set()


def test_a_name_resolving_to_a_refused_address_is_not_posted_to(model_server, small_repo, tmp_path):
    """A name is only resolved when the callback is sent: there the address is checked too
    (a name that resolves to loopback is refused with private addresses off)."""
    receiver = HangingReceiver().start()
    receiver.release.set()
    port = receiver._httpd.server_address[1]
    records = _Records("resolves to a refused address")
    logging.getLogger("tidegate.async").addHandler(records)
    try:
        with _gateway(tmp_path, small_repo, model_server, callback_allow_private=False) as url:
            resp = _submit(url, f"http://localhost:{port}/cb")
            assert resp.status_code == 202, resp.text
            assert records.seen.wait(60), "the callback was neither sent nor refused"
        assert not receiver.arrived.is_set(), "the callback reached a loopback address"
    finally:
        logging.getLogger("tidegate.async").removeHandler(records)
        receiver.stop()


def test_a_hanging_callback_does_not_hold_up_the_queue(model_server, small_repo, tmp_path):
    """One consumer, a callback receiver that never answers: the next jobs are still served
    (the callback used to be sent by the consumer itself, which then waited out
    callback_attempts x callback_timeout_s before taking another job)."""
    receiver = HangingReceiver().start()
    try:
        with _gateway(
            tmp_path,
            small_repo,
            model_server,
            consumers=1,
            callback_timeout_s=300,
            callback_allow_private=True,  # the receiver is on loopback
        ) as url:
            assert _submit(url, receiver.endpoint + "/cb").status_code == 202
            assert receiver.arrived.wait(60), "the callback was never sent"
            later = [_submit(url).headers["location"] for _ in range(3)]
            deadline = time.monotonic() + 60
            for location in later:
                while (
                    resp := httpx.get(url + location, headers={"x-api-key": KEY})
                ).status_code == 202:
                    assert time.monotonic() < deadline, "jobs wait behind a hanging callback"
                    time.sleep(0.05)
                assert resp.status_code == 200, resp.text
            receiver.release.set()
    finally:
        receiver.release.set()
        receiver.stop()
