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
    requests: AsyncIterator, answer: Callable[[object], Awaitable]
) -> AsyncIterator:
    """``answer(request)`` for each request, started as it arrives, yielded in arrival order.
    ``answer`` never raises for a request's own failure (it answers the error instead)."""
    window: asyncio.Queue = asyncio.Queue(maxsize=STREAM_WINDOW)

    async def read() -> None:
        try:
            async for request in requests:
                await window.put(asyncio.ensure_future(answer(request)))
        except asyncio.CancelledError:
            raise
        except Exception:  # the client went away mid-stream: answer what came, then end
            log.debug("gRPC stream ended by its reader", exc_info=True)
        await window.put(None)

    reader = asyncio.ensure_future(read())
    try:
        while (task := await window.get()) is not None:
            yield await task
    finally:
        reader.cancel()
        while not window.empty():
            left = window.get_nowait()
            if left is not None:
                left.cancel()
