"""The local invoker's Invoke calls over its light HTTP client (``burst.faas.http_lite``), against
real loopback servers: keep-alive reuse, a connection the server dropped, bodies by length and
chunked, errors as InvokeErrors."""

import asyncio
import base64

import pytest

from burst.faas.base import InvokeError, InvokeErrorKind
from burst.faas.local import LocalInvoker

_REPORT = base64.b64encode(
    b"REPORT RequestId: r\tDuration: 1.00 ms\tBilled Duration: 1 ms\t"
    b"Memory Size: 128 MB\tMax Memory Used: 20 MB\t\n"
).decode()


def _answer(body: bytes, *, chunked: bool = False, extra: str = "") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Amz-Log-Result: {_REPORT}\r\n"
    if chunked:
        half = len(body) // 2
        parts = [body[:half], body[half:]]
        data = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"
        return (head + "Transfer-Encoding: chunked\r\n" + extra + "\r\n").encode() + data
    return (head + f"Content-Length: {len(body)}\r\n" + extra + "\r\n").encode() + body


class Server:
    """Answers each request on a connection with ``answers[i]`` (None: close it unanswered)."""

    def __init__(self, answers):
        self.answers = answers
        self.connections = 0
        self.requests = 0

    async def handle(self, reader, writer):
        self.connections += 1
        for answer in self.answers:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            if answer is None:
                break
            self.requests += 1
            writer.write(answer)
            await writer.drain()
        writer.close()


@pytest.fixture
async def serve():
    servers = []

    async def start(answers):
        server = Server(answers)
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(srv)
        port = srv.sockets[0].getsockname()[1]
        return server, LocalInvoker(f"http://127.0.0.1:{port}")

    yield start
    for srv in servers:
        srv.close()


async def test_a_keep_alive_connection_the_server_dropped_is_replaced(serve):
    # the server answers one request per connection, then drops it unanswered (a keep-alive
    # connection it closed as the next request came): nothing ran, so the invoker sends again
    server, invoker = await serve([_answer(b'{"n": 1}'), None])
    first = await invoker.invoke("f", b"{}")
    second = await invoker.invoke("f", b"{}")
    await invoker.close()
    assert first.payload == b'{"n": 1}' and second.payload == b'{"n": 1}'
    assert server.requests == 2 and server.connections == 2
    assert second.billing.billed_ms == 1 and second.billing.max_memory_used_mb == 20


async def test_a_fresh_connection_dropped_unanswered_is_a_transport_error_not_sent_again(serve):
    server, invoker = await serve([None])
    with pytest.raises(InvokeError) as err:
        await invoker.invoke("f", b"{}")
    await invoker.close()
    assert err.value.kind is InvokeErrorKind.TRANSPORT
    assert server.connections == 1  # not sent again: the function may have run


async def test_connections_are_reused_and_chunked_answers_read(serve):
    body = b'{"x": "' + b"y" * 5000 + b'"}'
    server, invoker = await serve([_answer(body, chunked=True), _answer(body)] * 3)
    results = [await invoker.invoke("f", b"{}") for _ in range(6)]
    await invoker.close()
    assert all(r.payload == body for r in results)
    assert server.connections == 1


async def test_connection_close_is_honoured(serve):
    server, invoker = await serve([_answer(b"{}", extra="Connection: close\r\n")])
    for _ in range(2):
        await invoker.invoke("f", b"{}")
    await invoker.close()
    assert server.connections == 2


async def test_nothing_listening_is_a_transport_error():
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    invoker = LocalInvoker(f"http://127.0.0.1:{port}")
    with pytest.raises(InvokeError) as err:
        await invoker.invoke("f", b"{}")
    await invoker.close()
    assert err.value.kind is InvokeErrorKind.TRANSPORT


async def test_a_slow_answer_times_out_as_a_transport_error(serve):
    gate = asyncio.Event()

    async def never(reader, writer):
        await gate.wait()

    srv = await asyncio.start_server(never, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    invoker = LocalInvoker(f"http://127.0.0.1:{port}", timeout_s=0.2)
    with pytest.raises(InvokeError) as err:
        await invoker.invoke("f", b"{}")
    await invoker.close()
    gate.set()
    srv.close()
    assert err.value.kind is InvokeErrorKind.TRANSPORT
