"""Straggler hedging for fork-join legs: a leg that runs past what this stage's legs usually
take (by a factor) is invoked a second time and the first answer wins. One slow instance then
costs the request about ``factor`` times a normal leg instead of whatever the straggler takes.
Expected times are learned per (plan, stage) from recent legs in this master instance."""

from __future__ import annotations

import asyncio
import statistics
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class HedgePolicy:
    # hedge past factor x the median recent leg, never sooner than min_delay_ms: on a local
    # runtime a hedge usually needs a new (cold) instance, so only a real straggler is worth it
    factor: float = 4.0
    min_delay_ms: float = 200.0
    min_samples: int = 3  # learn a stage's legs first (cold starts are not stragglers)
    history: int = 32
    enabled: bool = True


class LegTimes:
    """Recent leg latencies per stage key, and the hedge delay they imply."""

    def __init__(self, policy: HedgePolicy):
        self.policy = policy
        self._seen: dict[str, deque[float]] = {}

    def record(self, key: str, ms: float) -> None:
        self._seen.setdefault(key, deque(maxlen=self.policy.history)).append(ms)

    def hedge_after_s(self, key: str) -> float | None:
        seen = self._seen.get(key)
        if not self.policy.enabled or seen is None or len(seen) < self.policy.min_samples:
            return None
        return max(self.policy.min_delay_ms, self.policy.factor * statistics.median(seen)) / 1e3


async def hedged(
    start: Callable[[int], Awaitable[T]], hedge_after_s: float | None
) -> tuple[T, int]:
    """``await start(1)``; if it has not answered after ``hedge_after_s``, also ``start(2)``.
    Returns (first successful answer, attempt that gave it); the loser is cancelled. Fails
    only when every attempt failed (with the first attempt's error)."""
    first = asyncio.ensure_future(start(1))
    if hedge_after_s is None:
        return await first, 1
    try:
        done, _ = await asyncio.wait({first}, timeout=hedge_after_s)
    except BaseException:
        first.cancel()
        raise
    if done:
        return first.result(), 1
    attempts = {first: 1, asyncio.ensure_future(start(2)): 2}
    pending, errors = set(attempts), []
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is None:
                    return task.result(), attempts[task]
                errors.append((attempts[task], task.exception()))
    finally:
        for task in pending:
            task.cancel()
    raise min(errors, key=lambda e: e[0])[1]
