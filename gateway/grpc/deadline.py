"""A gRPC infer call's deadline: the caller stops waiting, the dispatch does not."""

from __future__ import annotations

import asyncio

from ..errors import GatewayTimeout

_LATE: set[asyncio.Task] = set()  # dispatches running on past their call (held until done)


async def within_deadline(call, remaining_s: float | None, seen: dict, ended):
    """``call``'s result, or DEADLINE_EXCEEDED once the call's deadline passes. The dispatch is
    not cancelled then (nor when the client cancels the call): the replica computes it anyway
    and a burst's functions are billed, so it runs to its end and writes its ledger row,
    charges the tenant and counts in the metrics, as an HTTP request whose client went away
    does (cancelled, it left no row: a deadline just short of the answer was free work).
    ``ended(task)`` runs when it ends; ``seen["late"]`` says it was handed over."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.wait_for(asyncio.shield(task), remaining_s)
    except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
        if task.done() and not task.cancelled():
            raise  # the dispatch's own error, not the deadline's
        seen["late"] = True
        _LATE.add(task)
        task.add_done_callback(_LATE.discard)
        task.add_done_callback(ended)
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise GatewayTimeout("the call's deadline passed before the model answered") from None
