"""ModelStreamInfer's pacing: the requests on one stream run at once, as Triton runs them (so
they can ride one batch on a replica), and their answers go back in the order the requests came.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger("tidegate.grpc")
STREAM_WINDOW = 64  # requests of one stream in flight at once; reading waits past it


async def answer_in_order(
    requests: AsyncIterator,
    answer: Callable[[object], Awaitable],
    readers: set[asyncio.Task] | None = None,
) -> AsyncIterator:
    """``answer(request)`` for each request, started as it arrives, yielded in arrival order.
    ``answer`` never raises for a request's own failure (it answers the error instead).

    The stream's reading task is in ``readers`` while it reads: cancelled (the gateway shuts
    down), the stream reads no more, answers the requests it has read, then ends."""
    window: asyncio.Queue = asyncio.Queue(maxsize=STREAM_WINDOW)

    async def read() -> None:
        try:
            async for request in requests:
                await window.put(asyncio.ensure_future(answer(request)))
        except asyncio.CancelledError:
            if not window.full():  # (full: the answers left are taken, then ``reader.done``)
                window.put_nowait(None)
            raise
        except Exception:  # the client went away mid-stream: answer what came, then end
            log.debug("gRPC stream ended by its reader", exc_info=True)
        await window.put(None)

    reader = asyncio.ensure_future(read())
    if readers is not None:
        readers.add(reader)
        reader.add_done_callback(readers.discard)
    try:
        while not (reader.done() and window.empty()):
            if (task := await window.get()) is None:
                break
            yield await task
    finally:
        reader.cancel()
        while not window.empty():
            left = window.get_nowait()
            if left is not None:
                left.cancel()
