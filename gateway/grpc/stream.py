"""ModelStreamInfer's pacing: the requests on one stream run at once, as Triton runs them (so
they can ride one batch on a replica), and their answers go back in the order the requests came.

Shutting down, a stream answers every request it has read (those that came after the stop are
answered "shutting down", not run), then ends UNAVAILABLE once none has come for
``STOP_LINGER_S``; a client that closes its stream on the "shutting down" answer ends it sooner.
Before, a stream whose client never closed it held the gateway's shutdown for gRPC's whole 30 s
grace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from . import inference_pb2 as pb

log = logging.getLogger("tidegate.grpc")
STREAM_WINDOW = 64  # requests of one stream in flight at once; reading waits past it
# After its last answer the stream stays open this long before the server ends it: ended at
# once, the gateway's exit could reset the connection before the client read that answer
# (329d7fa: 1 run in about 15 lost a charged answer that way)
STOP_LINGER_S = 1.0
STOPPED_DETAILS = "the gateway is shutting down: send the rest to another instance"
_ENDED = object()  # (``_next``: the gateway stops and the stream has answered all it read)


async def answer_in_order(
    requests: AsyncIterator,
    answer: Callable[[object], Awaitable],
    stopped: asyncio.Event | None = None,
    context=None,
) -> AsyncIterator:
    """``answer(request)`` for each request, started as it arrives, yielded in arrival order.
    ``answer`` never raises for a request's own failure (it answers the error instead).

    Once ``stopped`` is set the stream ends (UNAVAILABLE on ``context``) as the module says."""
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
        while (task := await _next(window, stopped)) is not None:
            if task is _ENDED:
                if context is not None:
                    context.set_code(grpc.StatusCode.UNAVAILABLE)
                    context.set_details(STOPPED_DETAILS)
                return
            yield await task
    finally:
        reader.cancel()
        while not window.empty():
            left = window.get_nowait()
            if left is not None:
                left.cancel()


async def _next(window: asyncio.Queue, stopped: asyncio.Event | None):
    """The next answer's task; None at the stream's end; ``_ENDED`` once ``stopped`` is set,
    every request read has been answered and none came for ``STOP_LINGER_S``."""
    if stopped is None:
        return await window.get()
    if not window.empty():
        return window.get_nowait()
    get = asyncio.ensure_future(window.get())
    try:
        if not stopped.is_set():
            stop = asyncio.ensure_future(stopped.wait())
            try:
                await asyncio.wait((get, stop), return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
        if not get.done():
            await asyncio.wait((get,), timeout=STOP_LINGER_S)
        return get.result() if get.done() else _ENDED
    finally:
        get.cancel()  # (a get cancelled before it took an item leaves the item queued)


def final_answer(answer: pb.ModelStreamInferResponse, request) -> pb.ModelStreamInferResponse:
    """``answer`` as Triton's stream sends each: flagged ``triton_final_response`` (the request's
    last answer: a client that asked for ``enable_empty_final_response`` reads its requests'
    ends by it, and waited for ever without it), and an error naming the request's id, model
    and version (server src/grpc/stream_infer_handler.cc, StreamInferResponseComplete)."""
    infer = answer.infer_response
    if answer.error_message and isinstance(request, pb.ModelInferRequest):
        infer.id, infer.model_name = request.id, request.model_name
        infer.model_version = request.model_version
    infer.parameters["triton_final_response"].bool_param = True
    return answer
