"""Admission to the burst path: function instances are the scarce resource. A request holds
``slots`` instances (its master and workers) for its duration; past the platform's concurrency
it waits in a bounded FIFO queue, and past that it is refused at once (503 + Retry-After)
instead of being throttled by the platform half-way through its fork-join."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from contextlib import asynccontextmanager


class Busy(Exception):
    """No capacity now and none soon enough: the caller should come back after
    ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SlotGate:
    """FIFO admission over ``capacity`` slots; at most ``max_waiting`` requests queue, each for
    at most ``max_wait_s``. ``free()`` is what the gateway's routing can read."""

    def __init__(
        self,
        capacity: int,
        *,
        max_waiting: int = 64,
        max_wait_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if capacity < 1 or max_waiting < 0 or max_wait_s < 0:
            raise ValueError("capacity >= 1, max_waiting >= 0, max_wait_s >= 0")
        self.capacity = capacity
        self.max_waiting = max_waiting
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._used = 0
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()
        self._hold_s = 1.0  # running estimate of how long a request holds its slots

    def free(self) -> int:
        return self.capacity - self._used

    def waiting(self) -> int:
        return len(self._waiters)

    def _retry_after_s(self) -> float:
        return max(1.0, self._hold_s * (1 + len(self._waiters)) * 0.5)

    @asynccontextmanager
    async def hold(self, slots: int):
        """Hold ``slots`` for the body of the ``async with``; ``Busy`` if refused."""
        slots = min(max(1, slots), self.capacity)  # a request larger than the cap runs alone
        await self._acquire(slots)
        t0 = self._clock()
        try:
            yield
        finally:
            self._hold_s = 0.8 * self._hold_s + 0.2 * max(0.0, self._clock() - t0)
            self._release(slots)

    async def _acquire(self, slots: int) -> None:
        if not self._waiters and self._used + slots <= self.capacity:
            self._used += slots
            return
        if len(self._waiters) >= self.max_waiting:
            raise Busy(
                f"the burst path is at capacity ({self.capacity} function instances, "
                f"{len(self._waiters)} requests waiting)",
                self._retry_after_s(),
            )
        waiter = asyncio.get_running_loop().create_future()
        entry = (slots, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.max_wait_s)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():
                self._release(slots)  # granted just as we gave up: hand the slots on
            else:
                waiter.cancel()
                self._waiters.remove(entry)
                self._grant()
            if isinstance(exc, asyncio.TimeoutError):
                raise Busy(
                    f"no function capacity freed within {self.max_wait_s:g} s",
                    self._retry_after_s(),
                ) from None
            raise

    def _release(self, slots: int) -> None:
        self._used -= slots
        self._grant()

    def _grant(self) -> None:
        # strictly in order: a large request at the head is not starved by small ones
        while self._waiters and self._used + self._waiters[0][0] <= self.capacity:
            slots, waiter = self._waiters.popleft()
            self._used += slots
            waiter.set_result(None)
