"""A client that half-closes after sending (``shutdown(SHUT_WR)``, ``nc -N``) gets its answers."""

from __future__ import annotations

import asyncio
import socket

from gateway.fast_lane import FastLaneProtocol

from .conftest import serve_app


async def slow_app(scope, receive, send):
    """Answers each GET with its path, after the client's EOF has certainly arrived."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": message["type"] + ".complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await asyncio.sleep(0.2)  # (only widens the window the bug needed; nothing waits on time)
    body = scope["path"].encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _send_then_half_close(url: str, paths: list[str]) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths))
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):  # until the server closes
            received += chunk
    return received


def test_a_half_closed_client_gets_its_answer_and_then_the_close():
    with serve_app(slow_app) as url:
        answer = _send_then_half_close(url, ["/one"])
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"\r\n\r\n/one")


def test_pipelined_requests_before_a_half_close_are_all_answered_in_order():
    with serve_app(slow_app) as url:
        answer = _send_then_half_close(url, ["/a", "/b", "/c"])
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert answer.index(b"\r\n\r\n/a") < answer.index(b"\r\n\r\n/b") < answer.index(b"\r\n\r\n/c")


def test_an_eof_inside_a_body_still_ends_the_request():
    seen = []

    async def body_reader(scope, receive, send):
        if scope["type"] == "lifespan":
            return await slow_app(scope, receive, send)
        seen.append((await receive())["type"])  # the part of the body that came
        seen.append((await receive())["type"])  # then the disconnect, not a wait forever

    with serve_app(body_reader) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123")
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(65536) == b""  # closed without an answer: the request was cut
    assert seen == ["http.request", "http.disconnect"]


class _QuickHeads(FastLaneProtocol):
    head_timeout_s = 0.3  # (the sweep is what the test waits on: recv until the close)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = 0.1  # (the head timeout waits past uvicorn's keep-alive)


def test_a_head_that_never_ends_gets_408_and_the_close_and_others_are_served():
    with serve_app(slow_app, protocol=_QuickHeads) as url:
        host, port = url.removeprefix("http://").split(":")
        idle = socket.create_connection((host, int(port)), timeout=30)
        partial = socket.create_connection((host, int(port)), timeout=30)
        partial.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Drip: ")  # and never the rest
        answers = []
        for sock in (idle, partial):
            received = b""
            while chunk := sock.recv(65536):  # until the server closes
                received += chunk
            sock.close()
            answers.append(received)
        assert _send_then_half_close(url, ["/after"]).endswith(b"/after")
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive in time" in answer
