"""``burst.faas.http_lite`` against real loopback servers at its edges: a server closing
mid-answer, answers bigger than the reader's buffer or in pieces, a connection reused after an
error, a cancelled or timed-out call, a client closed while a call is in flight."""

import asyncio

import pytest

from burst.faas.http_lite import LiteHttp


def _length_answer(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def _chunked(parts: list[bytes], *, end: bool = True) -> bytes:
    data = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + data + (b"0\r\n\r\n" * end)


class Server:
    """Per request: ``script(n, writer)`` answers the n-th request of the whole server (it may
    write, close, or wait); counts connections and notes when each one ends."""

    def __init__(self, script):
        self.script = script
        self.connections = 0
        self.requests = 0
        self.open = 0
        self.closed = asyncio.Event()

    async def handle(self, reader, writer):
        self.connections += 1
        self.open += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length)
                self.requests += 1
                if not await self.script(self.requests, writer, body):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.open -= 1
            self.closed.set()


@pytest.fixture
async def serve():
    servers, clients = [], []

    async def start(script):
        server = Server(script)
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(srv)
        client = LiteHttp("127.0.0.1", srv.sockets[0].getsockname()[1])
        clients.append(client)
        return server, client

    yield start
    for client in clients:
        await client.close()
    for srv in servers:
        srv.close()


def _echo():
    """Answers each request with its own body (keep-alive)."""

    async def script(n, writer, body):
        writer.write(_length_answer(body))
        await writer.drain()
        return True

    return script


async def test_a_chunked_answer_cut_off_by_the_server_is_an_error_not_a_short_body(serve):
    async def script(n, writer, body):
        if n == 1:  # one chunk of two, then the server goes away
            writer.write(_chunked([b"a" * 100], end=False))
            await writer.drain()
            return False
        writer.write(_length_answer(body))
        return True

    server, client = await serve(script)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await client.post("/f", b"x", {})
    assert (await client.post("/f", b"again", {})).body == b"again"  # a fresh connection
    assert server.connections == 2


async def test_a_length_answer_cut_off_is_an_error_and_its_connection_not_reused(serve):
    async def script(n, writer, body):
        if n == 1:
            writer.write(_length_answer(b"b" * 1000)[:-500])
            await writer.drain()
            return False
        writer.write(_length_answer(body))
        return True

    server, client = await serve(script)
    with pytest.raises(asyncio.IncompleteReadError):
        await client.post("/f", b"x", {})
    assert (await client.post("/f", b"next", {})).body == b"next"
    assert server.connections == 2


async def test_answers_bigger_than_the_buffer_and_in_pieces_are_read_whole(serve):
    big = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB: over the reader's 1 MiB limit

    async def script(n, writer, body):
        answer = _length_answer(big) if n % 2 else _chunked([big[:1_500_000], big[1_500_000:]])
        for i in range(0, len(answer), 300_001):  # in odd pieces, a drain between
            writer.write(answer[i : i + 300_001])
            await writer.drain()
        return True

    server, client = await serve(script)
    bodies = [(await client.post("/f", b"x", {})).body for _ in range(4)]
    assert all(b == big for b in bodies)
    assert server.connections == 1


async def test_a_connection_is_reused_after_an_error_status_but_not_after_garbage(serve):
    async def script(n, writer, body):
        if n == 1:
            writer.write(_length_answer(b'{"message": "no"}', "500 Internal Server Error"))
        elif n == 2:
            writer.write(b"SPAM\r\n\r\n")
        else:
            writer.write(_length_answer(body))
        await writer.drain()
        return True

    server, client = await serve(script)
    assert (await client.post("/f", b"x", {})).status == 500
    with pytest.raises(ConnectionError):
        await client.post("/f", b"x", {})  # same connection, an answer that is not HTTP
    assert (await client.post("/f", b"third", {})).body == b"third"
    assert server.connections == 2


class Held:
    """A script that echoes each request once ``release`` is set (only the first request's
    answer is held with ``first_only``); ``waiting`` is set once a request is held."""

    def __init__(self, first_only: bool):
        self.first_only = first_only
        self.waiting, self.release = asyncio.Event(), asyncio.Event()

    async def script(self, n, writer, body):
        if n == 1 or not self.first_only:
            self.waiting.set()
            await self.release.wait()
        writer.write(_length_answer(body))
        await writer.drain()
        return True


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_a_call_ended_mid_answer_leaves_no_connection_holding_its_answer(serve, how):
    # if the abandoned call's connection went back to the pool, the next call would read the
    # first call's late answer as its own
    held = Held(first_only=True)
    server, client = await serve(held.script)
    waiting, release = held.waiting, held.release
    if how == "cancel":
        call = asyncio.ensure_future(client.post("/f", b"first", {}))
        await waiting.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    else:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.post("/f", b"first", {})
    release.set()
    assert (await client.post("/f", b"second", {})).body == b"second"
    assert server.connections == 2
    await asyncio.wait_for(server.closed.wait(), 5)  # the abandoned one was closed


async def test_no_body_statuses_do_not_wait_for_the_server_to_close(serve):
    async def script(n, writer, body):
        status = {1: "204 No Content", 2: "304 Not Modified"}.get(n)
        if status:
            writer.write(f"HTTP/1.1 {status}\r\n\r\n".encode())
        else:  # an interim answer first: the call's answer is the one after it
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + _length_answer(body))
        await writer.drain()
        return True

    server, client = await serve(script)
    async with asyncio.timeout(5):
        assert (await client.post("/f", b"x", {})).status == 204
        assert (await client.post("/f", b"x", {})).status == 304
        assert (await client.post("/f", b"third", {})).body == b"third"
    assert server.connections == 1


async def test_a_call_finishing_after_close_does_not_leave_its_connection_open(serve):
    held = Held(first_only=False)
    server, client = await serve(held.script)
    call = asyncio.ensure_future(client.post("/f", b"late", {}))
    await held.waiting.wait()
    await client.close()  # as LocalInvoker.close() at shutdown, a leg still out
    held.release.set()
    assert (await call).body == b"late"
    await asyncio.wait_for(server.closed.wait(), 5)
    assert server.open == 0


async def test_a_connection_idle_too_long_under_newer_ones_is_closed(serve, monkeypatch):
    # connections are reused newest first: with one call at a time, an older one at the bottom
    # of the pool was never taken again, so never closed (the server's side stayed half-open)
    import types

    import burst.faas.http_lite as http_lite

    now = [1000.0]  # the pool's clock (the event loop keeps its own)
    monkeypatch.setattr(http_lite, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    held = Held(first_only=True)
    server, client = await serve(held.script)
    first = asyncio.ensure_future(client.post("/f", b"a", {}))
    await held.waiting.wait()
    assert (await client.post("/f", b"b", {})).body == b"b"  # a second connection meanwhile
    held.release.set()
    await first  # both pooled now
    assert server.connections == 2 and server.open == 2
    for _ in range(3):  # one call at a time, ever later: only the newest is reused
        now[0] += 20.0
        await client.post("/f", b"c", {})
    await asyncio.wait_for(server.closed.wait(), 5)
    assert server.connections == 2 and server.open == 1
