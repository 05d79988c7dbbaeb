"""The fast lane (gateway/fast_lane.py) over a real loopback server: a user sees the same answers,
headers and errors as on the app's ASGI path, and hostile input does not hurt the server.

A query string sends the same request down the ASGI path (the lane takes plain infer URLs only),
so each case is compared with itself; a counting endpoint proves which path answered.
"""

from __future__ import annotations

import json
import logging
import socket
import time

import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.fast_lane import FastLane
from gateway.settings import Settings
from vmpool.codec import decode_response, encode_request

from .conftest import serve_app
from .ledger_rows import ledger_rows

MLP = "/v2/models/mlp/infer"
VOLATILE = {"date", "x-request-id", "server-timing", "x-tidegate-cost-usd"}


class CountingEndpoint:
    """The app's infer endpoint, counting the requests the lane hands it."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.calls = 0

    async def respond(self, *args):
        self.calls += 1
        return await self.endpoint.respond(*args)


@pytest.fixture(scope="module")
def lane_gateway(model_server, small_repo, tmp_path_factory):
    data = tmp_path_factory.mktemp("lane-data")
    settings = Settings.load(
        None,
        data_dir=data,
        repo=small_repo,
        body_timeout_s=1.0,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    app = create_app(settings)
    counter = CountingEndpoint(app.fast_lane.endpoint)
    app.fast_lane = FastLane(counter, app.fast_lane.access_log, cors=app.fast_lane.cors)
    with serve_app(app) as url:
        yield url, counter, data


def _binary(rows: int = 1, seed: int = 0):
    x = np.random.default_rng(seed).standard_normal((rows, 784)).astype(np.float32)
    body, header_length = encode_request({"input": x}, binary_output=True)
    return body, {
        "Inference-Header-Content-Length": str(header_length),
        "Content-Type": "application/octet-stream",
    }


def _both(url: str, counter: CountingEndpoint, path: str, body: bytes, headers: dict):
    """The same POST on the lane and on the ASGI path: (lane answer, ASGI answer)."""
    before = counter.calls
    lane = httpx.post(url + path, content=body, headers=headers)
    assert counter.calls == before + 1, "the lane did not take the request"
    asgi = httpx.post(url + path + "?via=asgi", content=body, headers=headers)
    assert counter.calls == before + 1, "the ASGI comparison went down the lane"
    return lane, asgi


def _same_answer(lane: httpx.Response, asgi: httpx.Response) -> None:
    assert lane.status_code == asgi.status_code, (lane.text, asgi.text)
    assert set(lane.headers) == set(asgi.headers)
    for name in set(lane.headers) - VOLATILE:
        assert lane.headers[name] == asgi.headers[name], name
    assert lane.headers["x-request-id"]


def test_binary_answer_is_the_same_as_the_asgi_path(lane_gateway):
    url, counter, _ = lane_gateway
    body, headers = _binary(rows=3)
    lane, asgi = _both(url, counter, MLP, body, headers)
    _same_answer(lane, asgi)
    assert lane.status_code == 200 and lane.headers["x-tidegate-path"] == "vm"
    assert lane.headers["content-type"] == "application/octet-stream"
    length = int(lane.headers["inference-header-content-length"])
    got = decode_response(lane.content, length).outputs["output"]
    want = decode_response(asgi.content, length).outputs["output"]
    assert got.shape == (3, 10) and np.array_equal(got, want)


def test_json_answer_and_request_id_echo(lane_gateway):
    url, counter, _ = lane_gateway
    data = {
        "inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.5] * 784}]
    }
    headers = {"x-request-id": "my-id-1", "content-type": "application/json"}
    lane, asgi = _both(url, counter, MLP, json.dumps(data).encode(), headers)
    _same_answer(lane, asgi)
    assert lane.headers["x-request-id"] == asgi.headers["x-request-id"] == "my-id-1"
    assert lane.json()["outputs"] == asgi.json()["outputs"]


@pytest.mark.parametrize(
    "path, body, headers, status",
    [
        ("/v2/models/nope/infer", b'{"inputs": []}', {}, 404),
        ("/v2/models/mlp/versions/7/infer", b'{"inputs": []}', {}, 404),
        (MLP, b"{not json", {}, 400),
        (MLP, b'{"inputs": []}', {"Inference-Header-Content-Length": "999"}, 400),
        (MLP, b'{"inputs": []}', {"Inference-Header-Content-Length": "x"}, 400),
        (MLP, b'{"inputs": [{"name": "x"}]}', {}, 400),
        (MLP, b'{"inputs": []}', {"X-Tidegate-Route": "moon"}, 400),
        (MLP, b"", {}, 400),
    ],
)
def test_errors_are_the_same_as_the_asgi_path(lane_gateway, path, body, headers, status):
    url, counter, _ = lane_gateway
    lane, asgi = _both(url, counter, path, body, headers)
    _same_answer(lane, asgi)
    assert lane.status_code == status
    assert lane.json() == asgi.json() and lane.json()["error"]


def test_answers_are_logged_counted_and_in_the_ledger(lane_gateway, caplog):
    url, counter, data = lane_gateway
    body, headers = _binary()
    with caplog.at_level(logging.INFO, logger="tidegate.access"):
        ok = httpx.post(url + MLP, content=body, headers={**headers, "x-request-id": "lane-ok"})
        missing = httpx.post(url + "/v2/models/nope/infer", content=b"{}")
        assert ok.status_code == 200 and missing.status_code == 404
        # (the line and the 404's count are made just after the answer is written, on the
        # server's thread: under load this thread can read before they are; wait for them)
        deadline = time.monotonic() + 10.0
        while True:
            lines = [r.getMessage() for r in caplog.records if r.name == "tidegate.access"]
            if any("status=404" in line for line in lines) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
    assert any("status=200" in line and "request_id=lane-ok" in line for line in lines), lines
    assert any("status=404" in line and "model=nope" in line for line in lines), lines
    rows = ledger_rows(data, "SELECT path, status FROM requests WHERE id = 'lane-ok'")
    assert rows == [("vm", 200)]
    metrics = httpx.get(url + "/metrics").text
    # a made-up model name is no series of its own (a client could make them without end)
    assert 'code="404",model="unknown",path="none"' in metrics and 'model="nope"' not in metrics


# -- the wire, byte by byte ---------------------------------------------------------------------


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_answers(sock: socket.socket, count: int) -> list[tuple[int, dict, bytes]]:
    """``count`` HTTP answers read off ``sock`` (status, headers, body)."""
    buffer, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return answers
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", 0))
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
        answers.append((int(lines[0].split()[1]), headers, buffer[:length]))
        buffer = buffer[length:]
    return answers


def _request(body: bytes, headers: dict, path: str = MLP, length: int | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _live(url: str) -> bool:
    return httpx.get(url + "/v2/health/live").status_code == 200


def test_keep_alive_and_pipelined_requests_are_answered_in_order(lane_gateway):
    url, counter, _ = lane_gateway
    first, headers = _binary(seed=1)
    second, _ = _binary(seed=2)
    with _connect(url) as sock:
        sock.sendall(_request(first, {**headers, "x-request-id": "one"}))
        assert _read_answers(sock, 1)[0][0] == 200
        # two requests in one write: the second waits for the first's answer
        sock.sendall(
            _request(first, {**headers, "x-request-id": "two"})
            + _request(second, {**headers, "x-request-id": "three"})
        )
        answers = _read_answers(sock, 2)
    assert [(status, h["x-request-id"]) for status, h, _ in answers] == [
        (200, "two"),
        (200, "three"),
    ]
    assert counter.calls >= 2


def test_a_client_that_half_closes_after_pipelining_gets_every_answer(lane_gateway):
    url, _, _ = lane_gateway
    body, headers = _binary(seed=3)
    with _connect(url) as sock:
        sock.sendall(b"".join(_request(body, {**headers, "x-request-id": i}) for i in "abc"))
        sock.shutdown(socket.SHUT_WR)  # as `nc -N` does: nothing more to send
        answers = _read_answers(sock, 4)  # three, then the close (no fourth)
    assert [(status, h["x-request-id"]) for status, h, _ in answers] == [
        (200, "a"),
        (200, "b"),
        (200, "c"),
    ]
    assert answers[0][2] == answers[1][2] == answers[2][2]  # one input, one output
    assert _live(url)


def test_a_truncated_body_gets_408_and_the_connection_closes(lane_gateway):
    url, _, _ = lane_gateway
    body, headers = _binary()
    with _connect(url) as sock:
        sock.sendall(_request(body[:100], headers, length=len(body)))  # then nothing more
        answers = _read_answers(sock, 1)
        assert sock.recv(1) == b""  # closed after the answer
    status, answer_headers, answer = answers[0]
    assert status == 408 and answer_headers["connection"] == "close"
    assert "did not arrive" in json.loads(answer)["error"]
    assert _live(url)


def test_a_client_gone_mid_body_leaves_the_server_live(lane_gateway):
    url, _, _ = lane_gateway
    body, headers = _binary()
    for _ in range(20):
        with _connect(url) as sock:
            sock.sendall(_request(body[:50], headers, length=len(body)))
    assert _live(url)
    ok = httpx.post(url + MLP, content=body, headers=headers)
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        _request(b"{}", {}, length=None).replace(b"Content-Length: 2", b"Content-Length: abc"),
        _request(b"{}", {}).replace(b"Content-Length: 2", b"Content-Length: -2"),
        _request(b"{}", {}) + b"garbage that is not a request\r\n\r\n",
        _request(b"{}", {"x-big": "a" * 200_000}),
        _request(b"{}", {f"x-h{i}": "v" for i in range(2000)}),
    ],
    ids=["length-not-a-number", "negative-length", "bytes-past-the-body", "huge-header", "many"],
)
def test_hostile_bytes_get_an_http_answer_and_the_server_stays_live(lane_gateway, raw):
    url, _, _ = lane_gateway
    with _connect(url) as sock:
        sock.sendall(raw)
        answers = _read_answers(sock, 2 if b"garbage" in raw else 1)
    assert answers, "no answer at all"
    for status, _, body in answers:
        assert 400 <= status < 500 or status == 200 or status == 413, (status, body[:200])
    assert _live(url)


def test_a_large_body_takes_the_asgi_path_with_its_limits(lane_gateway):
    url, counter, _ = lane_gateway
    before = counter.calls
    big = httpx.post(url + MLP, content=b"\0" * (200 * 1024))  # over the lane's 64 KiB
    assert counter.calls == before
    assert big.status_code == 400 and big.json()["error"]


def test_connection_close_is_honoured_on_the_lane(lane_gateway):
    url, counter, _ = lane_gateway
    body, headers = _binary()
    before = counter.calls
    with _connect(url) as sock:
        sock.sendall(_request(body, {**headers, "Connection": "close"}))
        answers = _read_answers(sock, 1)
        assert sock.recv(1) == b""  # closed after the answer
    assert counter.calls == before + 1
    status, answer_headers, _ = answers[0]
    assert status == 200 and answer_headers["connection"] == "close"


@pytest.mark.parametrize(
    "raw",
    [
        _request(b"{}", {}).replace(b"HTTP/1.1", b"HTTP/1.0"),
        _request(b"{}", {"Expect": "100-continue"}),
        _request(b"{}", {"Transfer-Encoding": "chunked"}).replace(b"Content-Length: 2\r\n", b""),
        _request(b"{}", {"X-Request-Id": "a"}).replace(b"\r\n\r\n", b"\r\nX-Request-Id: b\r\n\r\n"),
    ],
    ids=["http-1.0", "expect-100-continue", "chunked", "repeated-header"],
)
def test_requests_the_lane_does_not_take_are_answered_by_the_app(lane_gateway, raw):
    url, counter, _ = lane_gateway
    if b"chunked" in raw:
        raw = raw.replace(b"\r\n\r\n{}", b"\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    before = counter.calls
    with _connect(url) as sock:
        sock.sendall(raw)
        # "100 Continue" first, then the answer
        answers = _read_answers(sock, 2 if b"100-continue" in raw else 1)
    assert counter.calls == before
    status, answer_headers, body = [a for a in answers if a[0] != 100][0]
    assert status == 400 and "inputs" in json.loads(body)["error"]
    assert answer_headers["x-request-id"]
