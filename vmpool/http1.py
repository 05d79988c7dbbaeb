"""A small keep-alive HTTP/1.1 client for one job: POST a body to a replica, read the answer.

The gateway -> replica hop is the gateway's own per-request CPU, so it avoids a general client's
machinery: one ``asyncio.Protocol`` per connection with httptools' C parser, idle connections
reused per host, head and body written in one ``writelines``. py-spy on the gateway (mlp, c=16)
had aiohttp's request path at about a tenth of its samples.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools


class ConnectFailed(OSError):
    """The connection could not be opened: the request was never sent."""


class ConnectionDropped(OSError):
    """The server closed the connection before answering."""

    def __init__(self, message: str, *, reused: bool, answered_bytes: int):
        super().__init__(message)
        self.reused = reused  # an idle keep-alive connection: the server may have timed it out
        self.answered_bytes = answered_bytes


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]  # lower-case names
    body: bytes


class _Connection(asyncio.Protocol):
    __slots__ = (
        "transport",
        "parser",
        "waiter",
        "status",
        "headers",
        "chunks",
        "received",
        "closed",
        "uses",
        "loop",
        "_name",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.uses = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.received = 0

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        # (asyncio.get_running_loop() is a getpid() system call per use on Python 3.11)
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(
                ConnectionDropped(
                    f"malformed HTTP answer: {exc}", reused=False, answered_bytes=self.received
                )
            )
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(
            ConnectionDropped(
                f"connection closed by the server ({exc or 'EOF'})",
                reused=self.uses > 1,
                answered_bytes=self.received,
            )
        )

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.status = self.parser.get_status_code()
        waiter, self.waiter = self.waiter, None
        chunks, headers = self.chunks, self.headers
        # the answer is the caller's now: an idle connection kept in the pool must not hold it
        # (it did until its next request: 64 idle connections x a 256 KB answer stayed resident)
        self.chunks, self.headers = [], {}
        if waiter is not None and not waiter.done():
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            waiter.set_result(Answer(self.status, headers, body))
        if not self.parser.should_keep_alive():
            self.closed = True
            self.transport.close()

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    async def request(self, head: bytes, body: bytes, timeout_s: float | None = None) -> Answer:
        """Send one request and wait for its answer; ``TimeoutError`` after ``timeout_s``.

        The deadline is a timer on the answer's future, not an ``asyncio.timeout`` block: that
        builds a context object, reschedules and uncancels the task on every request (about 4 %
        of the gateway's CPU per request in py-spy)."""
        self._reset()
        self.uses += 1
        loop = self.loop
        waiter = self.waiter = loop.create_future()
        self.transport.writelines((head, body))
        if timeout_s is None:
            return await waiter
        timer = loop.call_later(timeout_s, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Http1Pool:
    """Keep-alive connections per (host, port); at most ``max_idle`` idle ones kept per host."""

    def __init__(self, *, connect_timeout_s: float = 2.0, max_idle: int = 64):
        self.connect_timeout_s = connect_timeout_s
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], collections.deque[_Connection]] = {}
        self._hosts: dict[str, tuple[str, int, bytes]] = {}

    def _host(self, base_url: str) -> tuple[str, int, bytes]:
        known = self._hosts.get(base_url)
        if known is None:
            parts = urlsplit(base_url)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"only http:// replica URLs are supported, got {base_url!r}")
            known = (parts.hostname, parts.port or 80, parts.netloc.encode())
            self._hosts[base_url] = known
        return known

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(_Connection, host, port)
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc or 'timeout'}") from None
        return conn

    async def post(
        self,
        base_url: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        timeout_s: float | None,
    ) -> Answer:
        """POST ``body``; a dropped reused connection is retried once on a fresh one (the server
        may close an idle keep-alive connection just as a request is written on it)."""
        host, port, netloc = self._host(base_url)
        head = "".join(
            [
                f"POST {path} HTTP/1.1\r\nHost: ",
                netloc.decode(),
                "\r\n",
                *(f"{k}: {v}\r\n" for k, v in headers.items()),
                f"Content-Length: {len(body)}\r\n\r\n",
            ]
        ).encode("latin-1")
        idle = self._idle.setdefault((host, port), collections.deque())
        for attempt in (1, 2):
            conn = None
            while idle and conn is None:
                candidate = idle.pop()
                if not candidate.closed:
                    conn = candidate
            if conn is None:
                conn = await self._connect(host, port)
            try:
                answer = await conn.request(head, body, timeout_s)
            except ConnectionDropped as exc:
                if attempt == 1 and exc.reused and exc.answered_bytes == 0:
                    continue
                raise
            except BaseException:  # timeout or cancellation: the answer may still come
                conn.closed = True
                conn.transport.close()
                raise
            if not conn.closed and len(idle) < self.max_idle:
                idle.append(conn)
            return answer
        raise AssertionError("unreachable")

    def forget(self, base_url: str) -> None:
        """A replica that is gone: its idle connections closed, its address dropped."""
        known = self._hosts.pop(base_url, None)
        for conn in self._idle.pop(known[:2], ()) if known else ():
            if conn.transport is not None:
                conn.transport.close()

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                conn = idle.pop()
                if conn.transport is not None:
                    conn.transport.close()
        self._idle.clear()
