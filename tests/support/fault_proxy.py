"""A loopback HTTP proxy in front of a real server (the S3 test server, the function runtime):
it records every request, and injects faults: the next N answers replaced by an error status,
or held back longer than a client waits, or (``hold_after``) every one past a count held until
``release``."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.support.loopback import LoopbackHTTPServer

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


class FaultProxy(LoopbackHTTPServer):
    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.requests = 0  # every request that reached the proxy
        self.seen: list[tuple[str, str, bytes]] = []  # (method, path, body) of each request
        self._faults: list[tuple[str, float]] = []  # ("status", code) or ("delay", seconds)
        self._lock = threading.Lock()
        self._released = threading.Event()  # set on stop: held answers return at once
        self._hold: tuple[str, int] | None = None  # (method, how many more pass) once told
        self.holding = threading.Event()  # set when the first request is held
        self._listen(self._handler())

    def fail_next(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._faults += [("status", status)] * n

    def delay_next(self, n: int, seconds: float) -> None:
        with self._lock:
            self._faults += [("delay", seconds)] * n

    def hold_after(self, n: int, method: str = "POST") -> None:
        """From now on pass ``n`` more ``method`` requests, then hold each further one (its
        answer comes after ``release``): work that cannot finish, whatever the hosts' speeds."""
        with self._lock:
            self._hold = (method, n)

    def release(self) -> None:
        self._released.set()

    def _next_fault(self, method: str, path: str, body: bytes):
        with self._lock:
            self.requests += 1
            self.seen.append((method, path, body))
            if self._hold is not None and self._hold[0] == method:
                if self._hold[1] <= 0:
                    return ("hold", 0.0)
                self._hold = (method, self._hold[1] - 1)
            return self._faults.pop(0) if self._faults else None

    def stop(self) -> None:
        self._released.set()
        super().stop()

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._next_fault(self.command, self.path, body)
                if fault and fault[0] == "status":
                    code = b"ServiceUnavailable" if fault[1] >= 500 else b"AccessDenied"
                    error = (
                        b"<?xml version='1.0'?><Error><Code>" + code + b"</Code>"
                        b"<Message>injected</Message></Error>"
                    )
                    self.send_response(int(fault[1]))
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                if fault and fault[0] == "hold":
                    proxy.holding.set()
                    proxy._released.wait(600)  # then passed on (its client may be gone)
                elif fault and fault[0] == "delay":
                    # hold the answer past the client's patience, then drop the request: a
                    # late write must not reach the server after the test moved on
                    proxy._released.wait(fault[1])
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=600)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP_HEADERS and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _forward_quietly(self):
                try:
                    self._forward()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a held answer: that is the fault injected

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward_quietly

        return Handler
