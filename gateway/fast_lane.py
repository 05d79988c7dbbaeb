"""The fast lane: ``POST /v2/models/{m}[/versions/{v}]/infer`` answered from the HTTP protocol.

uvicorn hands every request to the app through its ASGI cycle: a scope, a
``RequestResponseCycle`` with an ``asyncio.Event``, the proxy-headers middleware, ``receive`` and
two ``send`` messages, each header re-validated. Measured with a trivial app, that cycle costs
162 us per request against 62 us on bare httptools; on the small ``mlp`` model it was the largest
share of the gateway's CPU per request. ``FastLaneProtocol`` (uvicorn's httptools protocol,
``OneSendProtocol``) recognises an infer POST when its headers are complete and answers it
itself, through the same ``InferEndpoint.respond`` as the ASGI path: tenants, rate limits, the
body budget (a lane body holds its declared bytes from before its first byte is read), routing,
the ledger, metrics, error bodies and ``x-request-id`` are the same code, and the access log
gets the same line. The answer leaves in one ``writev``.

Only plain requests take the lane; everything else goes to the app unchanged (uvicorn's path):
other URLs and methods, HTTP/1.0, ``Expect: 100-continue``, chunked or upgrade requests, bodies
without a ``Content-Length`` or above ``SMALL_BODY_BYTES`` (those are read with flow control), a
CORS request (``Origin``, when CORS is on), and a request pipelined behind one still being
answered.

A request the HTTP parser refuses (a malformed request line, header or framing, or a head over
``MAX_HEAD_BYTES``: httptools has no limit, so a client could grow one without end) is answered
400 ``{"error": ...}`` with an ``x-request-id``, and counted and logged like any other answer
(``AccessLog.refused_by_parser``).

Used as ``uvicorn.Config(http=FastLaneProtocol)`` with an app that has a ``fast_lane``
(``gateway.app.create_app`` sets it); without one it is ``OneSendProtocol``.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

import orjson

from uvicorn.protocols.http.httptools_impl import HEADER_VALUE_RE, STATUS_LINE

from .access_log import MODEL_KEY, PARSER_REFUSED
from .deferred import run_after
from .infer_endpoint import new_request_id
from vmpool.body import SMALL_BODY_BYTES
from vmpool.heap import LARGE_ANSWER_BYTES, answer_sent
from vmpool.http_protocol import OneSendProtocol
from vmpool.rest import INFER_PATH

_PREFIX = b"/v2/models/"
_SUFFIX = b"/infer"
_SEP = b": "
_CRLF = b"\r\n"
# uvicorn's HEADER_VALUE_RE on the values as latin-1 text (a tab is allowed)
_BAD_VALUE = re.compile(HEADER_VALUE_RE.pattern.decode("latin-1"))
_DEFAULT_HEAD: list = [None, b""]  # uvicorn's default headers: the list, and its bytes
# a request head (request line and headers) larger than this is refused: nginx takes 32 KiB by
# default, h11 16 KiB; a 20 kB x-request-id still passes
MAX_HEAD_BYTES = 64 * 1024
_MALFORMED = "invalid HTTP request (its request line, a header or its framing)"
_OVERSIZE = f"the request head (request line and headers) is over {MAX_HEAD_BYTES // 1024} KiB"


class _HeadTooLarge(Exception):
    """Raised in a parser callback: httptools stops, and uvicorn answers 400."""


@dataclass
class FastLane:
    """What the protocol needs from the gateway app: the endpoint that answers and the access log
    that records (``None``: no line), and whether CORS is on (then requests with an ``Origin``
    take the app's path, where the CORS middleware is)."""

    endpoint: object  # gateway.infer_endpoint.InferEndpoint
    access_log: object | None  # gateway.access_log.AccessLog
    cors: bool = False
    answering: int = 0  # lane requests being answered now (all connections)


class _FastCycle:
    """One fast-lane request: what uvicorn's protocol reads of its ``cycle`` (``response_complete``,
    ``keep_alive``, ``disconnected``, ``message_event.set()``), and the body as it arrives."""

    __slots__ = (
        "keep_alive",
        "response_complete",
        "disconnected",
        "chunks",
        "done",
        "waiter",
        "scope",
    )

    def __init__(self, keep_alive: bool, scope: dict):
        self.keep_alive = keep_alive
        self.scope = scope
        self.response_complete = False
        self.disconnected = False
        self.chunks: list[bytes] = []
        self.done = False  # the whole body is in
        self.waiter: asyncio.Future | None = None

    @property
    def more_body(self) -> bool:  # (as uvicorn's cycle: an EOF before the body's end cuts it)
        return not self.done

    @property
    def message_event(self) -> _FastCycle:
        return self  # uvicorn calls ``cycle.message_event.set()`` when the connection is lost

    def set(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def ready_body(self) -> bytes | None:
        """The whole body when it is all in and the client is still there, else None."""
        if not self.done or self.disconnected:
            return None
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def receive(self) -> dict:
        """The ASGI ``receive`` the endpoint reads the body with: the whole body, once it is in."""
        if not self.done and not self.disconnected:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        if self.disconnected:
            return {"type": "http.disconnect"}
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return {"type": "http.request", "body": body, "more_body": False}


class FastLaneProtocol(OneSendProtocol):
    """``OneSendProtocol`` that answers plain infer POSTs itself (see the module docstring)."""

    # The head's size, from the lengths of the reads (httptools says nothing of how much of a read
    # a head took): ``_head_after`` sums the reads after the one the open head began in, so the
    # head is larger than it and no larger than it plus ``_head_first`` and the read being parsed.
    # A head is refused once the first passes the limit (memory held stays within the limit and
    # two reads), or at its end if the second does and its exact size does.
    limit_head = False  # (OneSendProtocol's 431 would answer first, uncounted and unlogged)
    _head_open = False
    _head_after = 0
    _head_first = 0
    _read = 0
    _refusal = ""  # what the next parser 400 says, when it is not a malformed request

    def __init__(self, config, server_state, app_state, _loop=None):
        super().__init__(config, server_state, app_state, _loop)
        self.lane: FastLane | None = getattr(config.app, "fast_lane", None)
        self.url = b""

    def data_received(self, data: bytes) -> None:
        self._read = len(data)
        super().data_received(data)
        if self._head_open:  # a head still open after this read
            self._head_after += len(data)
            if self._head_after > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._refusal = _OVERSIZE
                self.send_400_response(_OVERSIZE)

    def on_message_begin(self) -> None:
        # uvicorn builds the request's ASGI scope here (ten entries and a copy of the app's
        # state); a lane request never reads it, so it is built once the app takes the request
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None  # type: ignore[assignment]
        self._head_after, self._head_first = -self._read, self._read  # (0 after this read)
        self._head_open = True

    def on_headers_complete(self) -> None:
        if self._head_after + self._head_first + self._read > MAX_HEAD_BYTES:
            size = len(self.url) + sum([len(k) + len(v) + 4 for k, v in self.headers])
            if size > MAX_HEAD_BYTES:
                self._refusal = _OVERSIZE
                raise _HeadTooLarge
        self._head_open = False
        lane = self.lane
        url = self.url
        if (
            lane is None
            or not url.startswith(_PREFIX)
            or not url.endswith(_SUFFIX)
            or self.parser.get_method() != b"POST"
            or not self._fast_request(lane)
        ):
            url, headers, expect = self.url, self.headers, self.expect_100_continue
            super().on_message_begin()  # the scope, as uvicorn makes it, for the app
            self.url, self.expect_100_continue = url, expect
            self.headers = self.scope["headers"] = headers
            super().on_headers_complete()

    def _fast_request(self, lane: FastLane) -> bool:
        """Start answering this request on the lane; False to leave it to the app."""
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.expect_100_continue:
            return False
        if self.parser.get_http_version() != "1.1" or self.parser.should_upgrade():
            return False
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in self.headers}
        if len(headers) != len(self.headers):  # a repeated header: the app decides what it means
            return False
        length = headers.get("content-length")
        if length is None or "transfer-encoding" in headers or (lane.cors and "origin" in headers):
            return False
        if not (length.isascii() and length.isdigit()) or int(length) > SMALL_BODY_BYTES:
            return False
        path = self.url.decode("latin-1")
        if "%" in path:
            return False  # percent-decoding is the app's (uvicorn decodes the path)
        # vmpool.rest.infer_target without its percent-decoding (the path has no "%")
        match = INFER_PATH.match(path)
        if match is None:
            return False
        target = (match[1], match[2])
        scope = {"type": "http", "method": "POST", "path": path, MODEL_KEY: match[1]}
        self.cycle = fast = _FastCycle(self.parser.should_keep_alive(), scope)
        task = self.loop.create_task(self._answer(lane, fast, scope, target, headers))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        return True

    def send_400_response(self, msg: str) -> None:
        """A request the parser refuses, answered 400 ``{"error": ...}`` and closed, and counted
        and logged: the request being read, if the refusal is in its body, through its own line
        (which says 400), else as one of its own."""
        error, self._refusal = self._refusal or _MALFORMED, ""
        request_id = new_request_id()
        log = self.lane.access_log if self.lane is not None else None
        cycle = self.cycle
        reading = cycle is not None and cycle.more_body and not cycle.response_complete
        if log is not None and reading:
            cycle.scope[PARSER_REFUSED] = request_id  # its own line and count say 400
        elif log is not None:
            method = self.parser.get_method().decode("latin-1") if self.url else ""
            path = self.url.partition(b"?")[0][:256].decode("latin-1")
            log.refused_by_parser(method, _NOT_PRINTABLE.sub(_escape, path), request_id)
        body = orjson.dumps({"error": error})
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"x-request-id: %s\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
            % (request_id.encode(), len(body), body)
        )
        self.transport.close()

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is not _FastCycle:
            return super().on_body(body)
        if not cycle.response_complete:
            cycle.chunks.append(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is not _FastCycle:
            return super().on_message_complete()
        cycle.done = True
        cycle.set()

    async def _answer(self, lane: FastLane, cycle: _FastCycle, scope, target, headers) -> None:
        t0 = time.perf_counter()
        note: dict = {}
        after: list = []  # bookkeeping put off until the answer is written (gateway/deferred.py)
        lane.answering += 1
        try:
            answer = await lane.endpoint.respond(
                "POST", scope["path"], target, headers, cycle.receive, note, after
            )
            if answer is not None:
                status, body, out_headers, lease = answer
                if lane.answering == 1:
                    # alone: no other client waits on us, and this one's next request cannot
                    # come before it reads the answer; a loopback wake-up likely puts the client
                    # on this CPU behind our remaining work, so the work goes first (mlp, c=1:
                    # always after measured +0.10 and +0.35 ms worse; c=16 better, 0.74-0.76)
                    run_after(after)
                try:
                    self._write(cycle, status, body, out_headers)
                finally:
                    if lease is not None:
                        lease.release()
        finally:
            lane.answering -= 1
            run_after(after)
            if lane.access_log is not None:
                lane.access_log.done(scope, note, (time.perf_counter() - t0) * 1000.0)
            self._complete(cycle)

    def _write(self, cycle: _FastCycle, status: int, body: bytes, headers: dict[str, str]) -> None:
        if cycle.disconnected:
            return
        # (one search over every value: what uvicorn's HEADER_VALUE_RE finds in any one of them,
        # an echoed x-request-id's CR/LF say, closes the connection as uvicorn does; a tab joins)
        if _BAD_VALUE.search("\t".join(headers.values())):
            self.transport.close()
            return
        lines = "".join([f"{name.lower()}: {value}\r\n" for name, value in headers.items()])
        connection = headers.get("connection")
        if connection is not None and connection.lower() == "close":
            cycle.keep_alive = False
        head = [STATUS_LINE[status], self._default_head(), lines.encode("latin-1")]
        head.append(b"content-length: %d\r\n" % len(body))
        if not cycle.keep_alive and connection is None:
            head.append(b"connection: close\r\n")
        head.append(_CRLF)
        self.transport.writelines((b"".join(head), body))
        if len(body) >= LARGE_ANSWER_BYTES:
            answer_sent(len(body))  # its pages go back once a few MB of them went (heap.py)
        if not cycle.keep_alive:
            self.transport.close()

    def _default_head(self) -> bytes:
        """uvicorn's default headers (date, server) as bytes, joined once per new list (uvicorn
        makes one a second)."""
        headers = self.server_state.default_headers
        if _DEFAULT_HEAD[0] is not headers:
            _DEFAULT_HEAD[1] = b"".join([name + _SEP + value + _CRLF for name, value in headers])
            _DEFAULT_HEAD[0] = headers  # (held: its id cannot be reused while cached)
        return _DEFAULT_HEAD[1]

    def _complete(self, cycle: _FastCycle) -> None:
        if cycle.response_complete:
            return
        # (answered before its body was all in, an error: the parser still reads the rest of this
        # message, as on uvicorn's path, and on_body drops it)
        cycle.response_complete = True
        self.on_response_complete()


_NOT_PRINTABLE = re.compile(r"[^!-~]")  # what an access line shows percent-encoded


def _escape(match: re.Match) -> str:
    return "%%%02X" % ord(match[0])


__all__ = ["MAX_HEAD_BYTES", "FastLane", "FastLaneProtocol"]
