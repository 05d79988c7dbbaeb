"""uvicorn's httptools protocol, sending each response's head and body in one ``send()``.

uvicorn writes the status line and headers, then the body, as two transport writes: two
syscalls, two TCP segments, and on loopback the first one wakes the peer on its own. On this
2-core VM a wake-up of another process is the dearest part of a small response (py-spy on the
gateway, mlp at c=16: the head's write held 14 % of the GIL samples, the body's 1 %). Here the
head waits for the body and both leave in one ``writelines`` (one ``writev``). A held head is
also sent when the response ends without a body write (HEAD), when the connection closes, and
at the end of the event-loop iteration (a streamed body that comes later).

A client that half-closes its side after sending (``shutdown(SHUT_WR)``, as ``nc -N`` does)
still gets every answer it is owed: uvicorn lets asyncio close the connection at EOF, which
dropped answers in progress and those pipelined behind them. The connection now closes after
the last one.

A connection waiting for a request head (idle from the start, or a head begun and never
finished) is answered 408 and closed after ``head_timeout_s``: uvicorn has no such limit, so a
slowloris client could hold connections until the process ran out of them. One timer per event
loop sweeps the connections; a request costs one clock read.

A request head (request line and headers) is bounded too: httptools keeps no limit, so a client
sending header after header grew the replica's memory without end (mlp replica: 256 MiB of
headers in 1.3 s, RSS 350 -> 611 MB; now it stays at 350). Past ``MAX_HEAD_BYTES`` a head is
answered 431 ``{"error": ...}`` and the connection closed (the gateway's ``FastLaneProtocol`` applies the same limit its own way).

A client that reads none of its answers holds one of them, not all: while its write buffer is
over the high-water mark, the connection reads no more requests and runs none it pipelined,
and once it has read nothing for ``head_timeout_s`` the sweep aborts it (``close()`` waits for
the buffer to be read, so uvicorn's keep-alive close kept such a connection and its answers for
ever: 20 pipelined requests of 4 MiB answers were all answered into the buffer). The answers it
leaves, and large answers in general, are trimmed from the heap afterwards (``vmpool/heap.py``).

Used as ``uvicorn.Config(http=OneSendProtocol)`` by the model server and the gateway.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vmpool.heap import LARGE_ANSWER_BYTES, answer_dropped, answer_sent

_STATUS_PREFIX = b"HTTP/1.1 "
_HEAD_END = b"\r\n\r\n"
_HEAD_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b'connection: close\r\ncontent-length: 51\r\n\r\n{"error":"the request head did not arrive in time"}'
)
_BAD_REQUEST_BODY = b'{"error":"invalid HTTP request (its request line, a header or its framing)"}'
_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BAD_REQUEST_BODY), _BAD_REQUEST_BODY)
)
# as the gateway's (gateway/fast_lane.py): nginx takes 32 KiB by default, h11 16 KiB
MAX_HEAD_BYTES = 64 * 1024
_HEAD_TOO_LARGE_BODY = b'{"error":"the request head (request line and headers) is over %d KiB"}' % (
    MAX_HEAD_BYTES // 1024
)
_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
    % (len(_HEAD_TOO_LARGE_BODY), _HEAD_TOO_LARGE_BODY)
)
REFUSED_LINGER_S = 2.0  # a refused head's connection reads and drops for this long, then closes
# the loops whose connections are swept (a set of weak references: a closed loop and its timer,
# which holds it, go with it)
_SWEEPING: weakref.WeakSet = weakref.WeakSet()


class _OneSendTransport:
    """A transport that holds a response head until the next write and sends both at once."""

    __slots__ = ("_transport", "_head", "_loop")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._head: bytes | None = None
        self._loop = loop

    def write(self, data: bytes) -> None:
        if len(data) >= LARGE_ANSWER_BYTES:
            answer_sent(len(data))  # its pages go back once a few MB of them went (heap.py)
        head = self._head
        if head is not None:
            self._head = None
            if not self._transport.is_closing():  # (writelines raises on a closed socket)
                self._transport.writelines((head, data))
            return
        # uvicorn's head write: status line and headers in one bytes object ("100 Continue"
        # must go out at once: the client waits for it before sending the body)
        if data.startswith(_STATUS_PREFIX) and data[9:10] != b"1" and data.endswith(_HEAD_END):
            self._head = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class OneSendProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose responses leave in one write (see the module docstring)."""

    _half_closed = False  # the client sent EOF: close once no answer is owed
    head_timeout_s = 60.0  # a request head must arrive within this (the module docstring)
    _waiting_since = 0.0  # loop time the connection began waiting for a request head
    # A head still open after a read took all of that read, so the reads after the one it began
    # in sum to a lower bound of its size: past the limit, refused (memory held: the limit and
    # two reads). httptools does not say where in a read a head begins.
    # The gateway's FastLaneProtocol bounds heads its own way (a 400 counted in
    # tidegate_requests_total and logged); the model server's protocol does it here.
    limit_head = True
    _head_in = False
    _head_bytes = 0
    _head_refused = False
    _last_unsent = -1  # bytes of answers unsent at the sweep before (-1: writing not paused)
    _stalled_since = 0.0  # loop time since which the sweeps saw none of them read
    _pipeline_held = False  # pipelined requests wait for the client to read (on_response_...)

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(_OneSendTransport(transport, self.loop))
        self._waiting_since = self.loop.time()
        if self.loop not in _SWEEPING:  # (past uvicorn's keep-alive, which closes idle ones)
            timeout_s = max(self.head_timeout_s, self.timeout_keep_alive + 1.0)
            _sweep(self.loop, self.connections, timeout_s)

    def data_received(self, data: bytes) -> None:
        if not self.limit_head:
            super().data_received(data)
            return
        if self._head_refused:
            return  # (the rest of a refused head, read and dropped until the close)
        began_open = self._head_in
        super().data_received(data)
        if self._head_in and began_open:  # (the read it began in is not counted)
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._refuse_head()

    def _refuse_head(self) -> None:
        """431 and close. The answer goes with a FIN and the rest of the head is read and
        dropped for a moment: closed at once with unread bytes, the socket would send a reset
        that can discard the 431 before the client reads it."""
        self._head_in, self._head_refused = False, True
        self.transport.write(_HEAD_TOO_LARGE)
        transport = self.transport
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(REFUSED_LINGER_S, transport.close)
        else:
            transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_in, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._head_in = False
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self.transport.flush()  # a response with no body write (HEAD)
        self._waiting_since = self.loop.time()
        held = None
        if self.flow.write_paused and self.pipeline:
            # the client reads nothing: its pipelined requests wait until it reads (their
            # answers would only pile up in the write buffer)
            held, self.pipeline = self.pipeline, deque()
        super().on_response_complete()  # (resumes reading)
        if held is not None:
            self._unset_keepalive_if_required()
            self.pipeline, self._pipeline_held = held, True
        if self.flow.write_paused:
            self.flow.pause_reading()  # and it sends no more until it reads
        if self._half_closed and not self.answers_owed():
            self.transport.close()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._pipeline_held:
            self._pipeline_held = False
            if self.pipeline and not self.transport.is_closing():
                self._start_asgi_task(*self.pipeline.pop())
        elif not self.answers_owed():
            self.flow.resume_reading()

    def connection_lost(self, exc) -> None:
        if self.flow is not None and self.flow.write_paused:
            answer_dropped()  # the answer it did not read is freed now
        super().connection_lost(exc)

    def unread_for(self, now: float) -> float:
        """Seconds the client has read none of its answers (the write buffer over the
        high-water mark and not shrinking), as far as the sweeps saw; 0 if it reads."""
        if self.flow is None or not self.flow.write_paused:
            self._last_unsent, self._stalled_since = -1, now
            return 0.0
        unsent = self.transport.get_write_buffer_size()
        if unsent < self._last_unsent or self._last_unsent < 0:
            self._stalled_since = now  # it read some (or has just stopped reading)
        self._last_unsent = unsent
        return now - self._stalled_since

    def head_overdue(self, now: float, timeout_s: float) -> bool:
        """Waiting for a request head (none in progress) for longer than ``timeout_s``."""
        return not self.answers_owed() and now - self._waiting_since > timeout_s

    def eof_received(self) -> bool | None:
        """Keep the write side open while answers are owed (True); else let asyncio close (and
        a request whose body the EOF cut short learns of it: ``http.disconnect``)."""
        if self.answers_owed() and not (self.cycle is not None and self.cycle.more_body):
            self._half_closed = True
            return True
        return None

    def send_400_response(self, msg: str) -> None:
        """A request the parser refuses (a bad request line, header or framing) answered 400
        ``{"error": ...}`` and closed, as every other error (uvicorn answered text/plain)."""
        self.transport.write(_BAD_REQUEST)
        self.transport.close()

    def answers_owed(self) -> bool:
        """Whether a request on this connection still waits for its answer."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)


def _sweep(loop: asyncio.AbstractEventLoop, connections: set, timeout_s: float) -> None:
    """Answer 408 and close every connection overdue for a request head; again in a while."""
    now = loop.time()
    for protocol in list(connections):
        if not isinstance(protocol, OneSendProtocol):
            continue
        if protocol.unread_for(now) > timeout_s:
            # it read nothing of its answers for that long: close() would wait for it to read
            # (uvicorn's keep-alive close did), so the answers and the connection stayed
            protocol.transport.abort()
        elif protocol.head_overdue(now, timeout_s):
            transport = protocol.transport
            if not transport.is_closing():
                transport.write(_HEAD_TIMEOUT)
                transport.close()
    _SWEEPING.add(loop)
    loop.call_later(max(timeout_s / 4, 0.05), _sweep, loop, connections, timeout_s)
