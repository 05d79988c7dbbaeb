"""A small HTTP/1.1 client for one plain-HTTP endpoint: POSTs over pooled keep-alive
connections, bodies by Content-Length (or chunked, in answers).

The local invoker's Invoke calls go through it: aiohttp's client spent 0.47 ms of CPU per
invocation (a no-op function on the local runtime, load 10), this 0.12 ms, and a split request's
master pays it in every round before its own leg starts and again when the answer comes
(``ops/bench/burst25hop_hop.py``). Anything else (prewarm, https) stays on aiohttp.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

# a pooled connection idle this long is closed rather than reused: aiohttp's server closes
# keep-alive connections after 75 s, and a request written into one it is closing is lost
MAX_IDLE_S = 30.0
# statuses whose answers never carry a body
_NO_BODY = frozenset({204, 304})


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.loop = asyncio.get_running_loop()
        self.idle_since = time.monotonic()

    def close(self) -> None:
        try:
            self.writer.close()
        except RuntimeError:  # its event loop is closed: the peer sees it shut now, and the
            sock = self.writer.get_extra_info("socket")  # transport frees it when collected
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class LiteHttp:
    """POSTs to ``http://host:port`` + paths, one request at a time per connection."""

    def __init__(self, host: str, port: int, base_path: str = ""):
        self.host, self.port = host, port
        self.base_path = base_path.rstrip("/")
        self._idle: list[_Conn] = []
        self._closed = False  # close() ran: a call still out closes its connection when done

    async def _acquire(self) -> tuple[_Conn, bool]:
        """(a connection, whether it was reused from the pool)."""
        now, loop = time.monotonic(), asyncio.get_running_loop()
        # the oldest idle at the bottom: taken last, so steady traffic would never reach (and
        # close) one idle too long there, which the server has closed
        while self._idle and now - self._idle[0].idle_since > MAX_IDLE_S:
            self._idle.pop(0).close()
        while self._idle:
            conn = self._idle.pop()
            stale = now - conn.idle_since > MAX_IDLE_S or conn.loop is not loop
            if stale or conn.reader.at_eof():
                conn.close()
                continue
            return conn, True
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        return _Conn(reader, writer), False

    def _head(self, path: str, headers: dict[str, str], length: int) -> bytes:
        lines = [f"POST {self.base_path}{path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def post(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str],
        *,
        sent: asyncio.Event | None = None,
    ) -> Response:
        """Send one POST and read its answer. A pooled connection the server closed before
        answering anything is replaced once by a fresh one (nothing reached the function);
        any other connection failure raises ``ConnectionError`` or ``IncompleteReadError``."""
        request = self._head(path, headers, len(body)) + body
        for attempt in (1, 2):
            conn, reused = await self._acquire()
            answered = False
            try:
                conn.writer.write(request)
                if sent is not None:
                    sent.set()  # with the kernel (or queued behind what is): on its way
                await conn.writer.drain()
                status_line = await conn.reader.readline()
                if not status_line:
                    raise ConnectionResetError("the server closed the connection")
                answered = True
                response, keep = await _read_response(status_line, conn.reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                conn.close()
                if reused and not answered and attempt == 1:
                    continue
                raise
            except BaseException:  # cancelled or timed out mid-request: its state is unknown
                conn.close()
                raise
            if keep and not self._closed:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                conn.close()
            return response
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()


async def _read_response(status_line: bytes, reader: asyncio.StreamReader) -> tuple[Response, bool]:
    """(the response, whether its connection may carry another request); interim (1xx)
    answers are read past."""
    while True:
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionResetError(f"not an HTTP response: {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while (line := await _line(reader)) not in (b"\r\n", b"\n"):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if not 100 <= status < 200:
            break
        status_line = await _line(reader)
    keep = parts[0] == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if status in _NO_BODY:
        body = b""  # none follows, whatever the headers say (RFC 9112 6.3)
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body, keep = await reader.read(), False  # until the server closes
    return Response(status, headers, body), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await _line(reader)).split(b";")[0].strip(), 16)
        if size == 0:
            while (await _line(reader)) not in (b"\r\n", b"\n"):
                pass  # trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # CRLF after each chunk


async def _line(reader: asyncio.StreamReader) -> bytes:
    """One whole line; the server closing before its end is an error (an empty size line read
    as 0 took a chunked answer cut off mid-way for a complete, shorter one)."""
    line = await reader.readline()
    if not line.endswith(b"\n"):
        raise asyncio.IncompleteReadError(line, None)
    return line
