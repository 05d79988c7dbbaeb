"""An idle keep-alive connection in the replica client's pool holds no answer it delivered: the
gateway kept the last answer of each of its idle connections (up to 256) until the
connection's next request, a large output model's answers resident for as long as no burst
came again."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

from vmpool import http1
from vmpool.http1 import Http1Pool

ANSWER_BYTES = 1 << 20
CALLS = 24
_BODY = b"x" * ANSWER_BYTES


async def _replica(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate) -> None:
    """Answers every POST with ANSWER_BYTES, keep-alive, once all CALLS requests are in (so
    every call has its own connection)."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            gate[0] += 1
            if gate[0] == CALLS:
                gate[1].set()
            await gate[1].wait()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % ANSWER_BYTES)
            writer.write(_BODY)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def _call_and_drop(pool: Http1Pool, url: str) -> int:
    answer = await pool.post(url, "/v2/models/m/infer", b"{}", {}, 30.0)
    return len(answer.body)


async def test_answers_dropped_by_their_callers_leave_the_pool():
    gate = [0, asyncio.Event()]
    server = await asyncio.start_server(lambda r, w: _replica(r, w, gate), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    pool = Http1Pool(max_idle=64)
    tracemalloc.start()
    try:
        # each caller reads its answer's size and drops it (a client that went away)
        sizes = await asyncio.gather(*(_call_and_drop(pool, url) for _ in range(CALLS)))
        assert sizes == [ANSWER_BYTES] * CALLS
        assert sum(len(idle) for idle in pool._idle.values()) == CALLS  # kept for reuse
        gc.collect()
        # what the client's connections allocated and still hold (the test's replica runs in
        # this process too: its buffers are not counted)
        traces = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, http1.__file__)]
        )
        held_mb = sum(stat.size for stat in traces.statistics("filename")) / 2**20
    finally:
        tracemalloc.stop()
        pool.close()
        server.close()
        await server.wait_closed()
    # before: each idle connection kept its last answer (24 x 1 MiB)
    assert held_mb < 4, f"{held_mb:.1f} MiB still held after the answers were dropped"
