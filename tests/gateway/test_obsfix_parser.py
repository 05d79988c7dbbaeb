"""A request the HTTP parser refuses (a malformed request line, a bad header, a head too large,
a body's framing) is answered 400 ``{"error": ...}`` with an ``x-request-id``, counted once in
``tidegate_requests_total{code="400"}`` and logged with one access line carrying that id. Before,
the app never saw these requests: no count, no line, no id (and a head had no size limit)."""

from __future__ import annotations

import json
import logging
import queue
import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.fast_lane import MAX_HEAD_BYTES
from gateway.settings import Settings

from .conftest import serve_app

MLP = b"/v2/models/mlp/infer"


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: queue.Queue = queue.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.put(json.loads(record.getMessage()))

    def line_of(self, request_id: str) -> dict:
        """The access line with ``request_id`` (waits for it; others are dropped)."""
        while True:
            line = self.lines.get(timeout=60)
            if line["request_id"] == request_id:
                return line


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("obsfix-parser"),
        repo=small_repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        access_log="json",
    )
    logger = logging.getLogger("tidegate.access")
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with serve_app(create_app(settings)) as url:
            yield url, handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _exchange(url: str, request: bytes) -> bytes:
    """``request`` on a fresh connection; all the server sent until it closed."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before all of it was sent: the answer is read below
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass  # (closed with unread bytes: what came before the reset is kept)
    return b"".join(chunks)


def _counts(url: str) -> dict[tuple[str, str, str], float]:
    """``tidegate_requests_total`` by (code, tenant, model), parsed as Prometheus reads it."""
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        if family.name == "tidegate_requests":
            for s in family.samples:
                if s.name == "tidegate_requests_total":
                    key = (s.labels["code"], s.labels["tenant"], s.labels["model"])
                    out[key] = out.get(key, 0.0) + s.value
    return out


BIG = b"a" * (MAX_HEAD_BYTES + 1000)
MANY = b"".join(b"X-H%05d: %s\r\n" % (i, b"v" * 40) for i in range(MAX_HEAD_BYTES // 50 + 10))
CASES = {
    # name: (request, what the error says, the counted (tenant, model), the logged (method, path))
    "malformed request line": (
        b"GARBAGE\r\n\r\n",
        "invalid HTTP request",
        ("unknown", ""),
        ("-", "-"),
    ),
    "a header without a colon": (
        b"POST " + MLP + b" HTTP/1.1\r\nHost: x\r\nX-Broken\r\nContent-Length: 2\r\n\r\n{}",
        "invalid HTTP request",
        ("unknown", "mlp"),
        ("POST", MLP.decode()),
    ),
    "a bad header on a health probe": (
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Broken\r\n\r\n",
        "invalid HTTP request",
        ("unknown", ""),
        ("GET", "/v2/health/live"),
    ),
    "one header over the limit": (
        b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + BIG + b"\r\n\r\n",
        "over 64 KiB",
        ("unknown", ""),
        ("GET", "/v2"),
    ),
    "many small headers over the limit": (
        b"GET /v2/models/mlp HTTP/1.1\r\nHost: x\r\n" + MANY + b"\r\n",
        "over 64 KiB",
        ("unknown", "mlp"),
        ("GET", "/v2/models/mlp"),
    ),
    "a head that never ends": (
        b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 * MAX_HEAD_BYTES),
        "over 64 KiB",
        ("unknown", ""),
        ("GET", "/v2"),
    ),
    "a chunk size that is not hex, in an infer body being read": (
        b"POST " + MLP + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nab\r\n0\r\n\r\n",
        "invalid HTTP request",
        ("default", "mlp"),  # the app had authenticated it (the default tenant)
        ("POST", MLP.decode()),
    ),
    "a made-up model's name in a bad request": (
        b"POST /v2/models/made-up-1/infer HTTP/1.1\r\nHost: x\r\nX-Broken\r\n\r\n",
        "invalid HTTP request",
        ("unknown", "unknown"),  # no series of its own
        ("POST", "/v2/models/made-up-1/infer"),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_parser_refusal_is_answered_counted_once_and_logged(gateway, case):
    url, access = gateway
    request, says, (tenant, model), (method, path) = case
    before = _counts(url)
    head, _, body = _exchange(url, request).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), head
    headers = dict(h.split(": ", 1) for h in head.decode("latin-1").split("\r\n")[1:])
    assert headers["content-type"] == "application/json"
    assert says in json.loads(body)["error"]
    line = access.line_of(headers["x-request-id"])
    assert (line["status"], line["method"], line["path"]) == (400, method, path), line
    after = _counts(url)
    changed = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    assert changed == {("400", tenant, model): 1.0}, changed


def test_a_head_just_under_the_limit_is_served(gateway):
    url, _ = gateway
    value = b"b" * (MAX_HEAD_BYTES - 200)
    request = b"GET /v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-A: " + value + b"\r\n\r\n"
    assert _exchange(url, request).startswith(b"HTTP/1.1 200 ")


def test_a_raw_utf8_path_is_logged_percent_encoded(gateway):
    """The access line shows what came on the wire, one token (a space or a newline in a
    logged path would forge fields or lines)."""
    url, access = gateway
    answer = _exchange(url, "GET /v2/\u2603 x HTTP/1.1\r\n\r\n".encode())
    request_id = answer.split(b"x-request-id: ", 1)[1].split(b"\r\n", 1)[0].decode()
    line = access.line_of(request_id)
    assert line["status"] == 400 and " " not in line["path"], line
    assert "\u2603" not in line["path"] and all(" " < c < "\x7f" for c in line["path"]), line
