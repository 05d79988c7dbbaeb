"""Invocations that outlive a caller who gave up on them (and the burst service's other
background work: the sweep of orphaned SQS queues).

A function platform runs an invocation to its end whatever its caller does (Lambda, and the
local runtime, which holds the instance until the function returns). So when the gateway's
burst timeout cancels a request, its slots in ``burst.gate.SlotGate`` must stay held until the
invocation ends, and its tensors must not be deleted under the master: ``ops/bench/async_step``
saw the gate hand the slots of 23 timed-out cold starts to new requests while the runtime still
ran them, and the runtime throttled those (503 after the retries).

``Detached.run(hold, work)`` waits for ``hold`` (the gate) as the caller does: a caller that
leaves while waiting leaves the queue. Once the slots are held, the work runs as its own task
to its end; a caller that leaves no longer waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

log = logging.getLogger("tidegate.burst")
T = TypeVar("T")


class Detached:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()  # referenced until done (close() ends them)

    @property
    def running(self) -> int:
        """Work whose caller left and that still runs."""
        return sum(1 for t in self._tasks if not t.done())

    async def run(self, hold: AbstractAsyncContextManager, work: Callable[[], Awaitable[T]]) -> T:
        held = asyncio.Event()

        async def body() -> T:
            async with hold:
                held.set()
                return await work()

        task = asyncio.ensure_future(body())
        self.keep(task)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not held.is_set():
                task.cancel()  # still queued for slots: nothing runs, nothing is held
            raise

    def keep(self, task: asyncio.Task) -> None:
        """Hold another background task of the owner until it ends (``close`` stops it)."""
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def sweep_orphan_queues(self, store, store_cfg: dict, older_than_s: float) -> None:
        """With the SQS transport, sweep the queues crashed masters left (``sqs_sweep``)."""
        if store_cfg.get("kind") != "sqs":
            return
        from burst.store.sqs_sweep import OrphanSweeper  # botocore, 1 s to import: only for SQS

        OrphanSweeper.start_for(store, older_than_s, keep=self.keep)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("burst request finished after its caller left: %s", task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
