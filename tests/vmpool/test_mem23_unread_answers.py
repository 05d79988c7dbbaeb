"""A client that never reads its answers holds neither the server's memory nor its connection:
it used to get every pipelined request answered into the server's write buffer (4 MiB each,
without bound), and the connection, closed by uvicorn's keep-alive timer, waited for ever for
the client to read. Now reading stops while the client reads nothing, the stalled connection is
aborted by the sweep, and the freed answers are trimmed from the heap."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from vmpool import heap
from vmpool.http_protocol import OneSendProtocol

ANSWER = b"x" * (4 << 20)
PIPELINED = 20


class _QuickSweep(OneSendProtocol):
    head_timeout_s = 0.3  # (the sweep is what the test waits on)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = 0.1


def _app(calls: list):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        calls.append(scope["path"])
        headers = [(b"content-length", str(len(ANSWER)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": ANSWER})

    return app


def _serve(app):
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", http=_QuickSweep, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:  # (a bound for a broken start only)
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


def _wait_for(condition, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_client_that_never_reads_is_cut_off_after_one_answer():
    calls: list = []
    trims_before = heap.ANSWERS.trims
    server, thread, port = _serve(_app(calls))
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(PIPELINED)))
        _wait_for(lambda: calls, "the first request was never answered")
        # the sweep aborts the stalled connection (before: it stayed, answers kept coming)
        _wait_for(
            lambda: not server.server_state.connections, "the unread connection is still open"
        )
        assert len(calls) <= 2, f"{len(calls)} answers queued for a client that reads nothing"
        received = 0
        sock.settimeout(30)
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        sock.close()
        assert received < 2 * len(ANSWER) + 4096  # cut off: not the 20 answers
        # its unread answer, freed at the abort, is given back to the system
        _wait_for(lambda: heap.ANSWERS.trims > trims_before, "no trim after the dropped answer")
    finally:
        server.should_exit = True
        thread.join(30)


def test_large_answers_are_followed_by_a_trim_and_small_ones_are_not():
    calls: list = []
    server, thread, port = _serve(_app(calls))
    try:
        trims_before = heap.ANSWERS.trims
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
            received = 0
            while received < len(ANSWER):
                received += len(sock.recv(1 << 20))
        # one 4 MiB answer, then quiet: its pages go back (before: only past 256 MiB free)
        _wait_for(lambda: heap.ANSWERS.trims > trims_before, "no trim after a large answer")
        small = heap.AnswerTrim()
        for _ in range(1000):
            small.sent(heap.LARGE_ANSWER_BYTES - 1)  # small answers' memory is reused
        assert small.sent_bytes == 0 and small.trims == 0
    finally:
        server.should_exit = True
        thread.join(30)
