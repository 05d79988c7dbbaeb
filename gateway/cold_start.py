"""The cold start routing adds to a burst request that needs a fresh function instance.

``ColdStartEstimate`` (kept by ``gateway.live.LiveCollector``): learnt from cold-started answers
(their latency over the warm median, smoothed) and raised at once by evidence that it is longer
than that:

- a burst request that failed after t ms (timed out, or throttled through its retries): one sent
  now may wait as long; this bound holds for ``window_s``;
- a burst request still in flight after t ms, less the warm median: a cold start that has not
  finished is at least as long as it has run.

``probe_cold_start`` measures one at start-up, where the platform can start instances on demand
(the embedded runtime): the default of ``LiveCollector.cold_start_ms`` (1 s) was an order of
magnitude short on this host, where a fresh instance imports torch and loads its plan (13-30 s
under load). With that default, ``ops/bench/async_step.py`` sent every interactive spill of the
step's first 10 s to instances that answered after the 30 s burst timeout (23 x 504), then
refilled the runtime while it still ran those abandoned cold starts (14 x 503, throttled).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import numpy as np

from vmpool.wire import NUMPY_DTYPES

log = logging.getLogger("tidegate.control")
SMOOTHING = 0.3  # weight of a new cold-started answer in the learnt penalty


class ColdStartEstimate:
    def __init__(self, window_s: float = 60.0, shared_host: bool = False):
        self.window_s = window_s
        # instances start on the gateway's own cores (the embedded runtime): k cold starts
        # under way make the next one about k+1 times as long (async_step: 3.5 s alone, 16-23 s
        # for 4-8 spills at once at the start of a step)
        self.shared_host = shared_host
        self.learnt_ms: float | None = None
        self._failures: deque[tuple[float, float]] = deque()  # (when, failed after ms)
        self._in_flight: dict[int, float] = {}  # token -> start time, oldest first
        self._answered: deque[tuple[float, float]] = deque()  # (start, end) of recent answers
        self._next_token = 0

    def started(self, now_s: float) -> int:
        """A burst request sent; its token goes back to ``finished``."""
        self._next_token += 1
        self._in_flight[self._next_token] = now_s
        return self._next_token

    def finished(
        self,
        now_s: float,
        token: int | None,
        cold_latency_ms: float | None = None,
        warm_p50_ms: float = 0.0,
        failed_after_ms: float | None = None,
        answered: bool = False,
    ) -> int:
        """A burst request ended: ``answered`` (after a cold start: ``cold_latency_ms``), failed
        after ``failed_after_ms``, or neither (a caller that left). Returns the instances an
        answer proves warm: it and the answered requests it overlapped (requests still starting
        cold beside it prove nothing: counting them sent spills to instances not up yet)."""
        if token is None:  # an untracked caller: the oldest request stands for it
            token = next(iter(self._in_flight), None)
        started_s = self._in_flight.pop(token, now_s)
        while self._answered and self._answered[0][1] < now_s - self.window_s:
            self._answered.popleft()
        overlapped = 0
        if answered:
            overlapped = 1 + sum(1 for _, end_s in self._answered if end_s > started_s)
            self._answered.append((started_s, now_s))
        if cold_latency_ms is not None:
            penalty_ms = max(cold_latency_ms - warm_p50_ms, 0.0)
            old = self.learnt_ms
            self.learnt_ms = (
                penalty_ms if old is None else (1 - SMOOTHING) * old + SMOOTHING * penalty_ms
            )
        if failed_after_ms is not None and failed_after_ms > 0:
            self._failures.append((now_s, failed_after_ms))
        return overlapped

    def ms(
        self, now_s: float, default_ms: float, warm_p50_ms: float = 0.0, cold_under_way: int = 0
    ) -> float:
        """The cold start to predict now (``cold_under_way``: cold starts in progress)."""
        while self._failures and self._failures[0][0] < now_s - self.window_s:
            self._failures.popleft()
        estimate = self.learnt_ms or default_ms
        if self.shared_host:
            estimate *= 1 + max(cold_under_way, 0)
        failed = max((ms for _, ms in self._failures), default=0.0)
        oldest = next(iter(self._in_flight.values()), None)
        running = 0.0 if oldest is None else (now_s - oldest) * 1e3 - warm_p50_ms
        return max(estimate, failed, running)


def warm_p50_ms(models: dict) -> float:
    """The fastest model's warm burst median in a ``ModelStats`` map (0 before any)."""
    return min((m.burst_latency.p50_ms for m in models.values() if m.burst_latency), default=0.0)


def zero_inputs(cfg) -> dict[str, np.ndarray]:
    """One row of zeros for each of a model's inputs (a warm-up request)."""
    return {
        t.name: np.zeros((1, *(max(d, 1) for d in t.shape[1:])), NUMPY_DTYPES[t.datatype])
        for t in cfg.inputs
        if t.datatype in NUMPY_DTYPES
    }


async def probe_cold_start(
    prepared: Awaitable | None,
    prewarm: Callable[[int], Awaitable],
    infer: Callable[..., Awaitable],
    models: dict,
    workers: int,
    set_cold_start_ms: Callable[[float], None],
    timeout_s: float = 300.0,
) -> None:
    """Once the plans are ``prepared``: start one instance and send it one request per model,
    timing the whole as a cold-started request would wait; ``set_cold_start_ms`` receives it
    (``timeout_s`` if it took longer: readiness waits no more). A failure is logged and the
    default stays (the first requests will report it)."""
    if prepared is not None:
        await prepared
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            if await prewarm(1) is False:
                return
            for cfg in models.values():
                await infer(cfg.name, zero_inputs(cfg), workers=workers)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        log.warning("the function cold start took over %.0f s", timeout_s)
        set_cold_start_ms(timeout_s * 1e3)
        return
    except Exception as exc:  # noqa: BLE001 - routing keeps its default; requests report it
        log.warning("could not measure the function cold start: %s", exc)
        return
    cold_ms = (time.perf_counter() - t0) * 1e3
    set_cold_start_ms(cold_ms)
    log.info("function cold start measured: %.0f ms", cold_ms)
