"""The one retry helper (tenacity): invokers, the master, the stores, the AWS clients' callers and
the async queue's callbacks use it.

Retries only what is safe to send again: Tidegate's handlers are idempotent (their outputs go to
per-request keys), store puts overwrite, gets and deletes have no effects. Backoff is exponential
with full jitter, so a burst of throttled callers does not retry in lockstep.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, wait_random_exponential

log = logging.getLogger("tidegate.burst")
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` counts the first try; waits grow from ``backoff_base_s`` to ``backoff_max_s``."""

    attempts: int = 5
    backoff_base_s: float = 0.05
    backoff_max_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ValueError("attempts >= 1 and non-negative backoff")


# retry_on(error, attempt_number) -> bool: whether this error, on this attempt, may be retried
RetryPredicate = Callable[[BaseException, int], bool]


async def with_retries(
    call: Callable[[], Awaitable[T]],
    retry_on: RetryPredicate,
    policy: RetryPolicy,
    *,
    what: str = "",
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """``await call()``, again on errors ``retry_on`` accepts, up to ``policy.attempts`` tries;
    the last error is raised as is."""

    def should_retry(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome is not None else None
        return exc is not None and retry_on(exc, state.attempt_number)

    def before_sleep(state: RetryCallState) -> None:
        log.debug(
            "retrying %s after attempt %d: %r",
            what,
            state.attempt_number,
            state.outcome.exception(),
        )

    retrying = AsyncRetrying(
        retry=should_retry,
        stop=stop_after_attempt(policy.attempts),
        wait=wait_random_exponential(multiplier=policy.backoff_base_s, max=policy.backoff_max_s),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable")  # reraise=True re-raises the last error
