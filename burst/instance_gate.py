"""The burst service's admission with its view of the function instances: a spilled request
that finds none idle waits for one already started (serving, or still starting cold) when
``policies.routing.instance_wait.should_wait`` says so, instead of invoking at once, which
makes the platform start an instance of its own (Lambda and the local runtime start one per
invocation that finds none idle). The simulator's function pool decides by the same rule.

What the gate knows is what it sees: instances it has had answered (idle for the keep-alive),
invocations under way (a request that found none idle is predicted to be cold-starting for
the learnt cold start), and the warm run time and cold start learnt from their answers. Where
the platform says whether an invocation started cold (Lambda's ``Init Duration``, Function
Compute's init time, the local runtime's bill: ``observed_cold``), that is what the gate learns
from: a request it sent as cold that met a warm instance on a busy host (slower than twice a
run) was once learnt as a cold start of a few ms, after which it queued spills behind the
instances it knew of rather than start more. Until
it has seen a warm answer it never waits: it cannot tell whether waiting meets the SLO.
One pool of instance groups for the service: every burst request is taken to hold the same
functions (the gateway's default workers); requests of other worker counts are counted alike.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

from burst.gate import Busy, SlotGate
from policies.routing.instance_wait import next_free, should_wait

__all__ = ["Busy", "InstanceGate", "observed_cold", "request_slo_ms"]
# the request's SLO, set by the gateway's dispatch before it calls the burst service (a context
# variable, so the service's ``infer`` keeps the signature its callers know); None: never wait
request_slo_ms: ContextVar[float | None] = ContextVar("tidegate_burst_slo_ms", default=None)
# the hold under way in this task: what the platform said of its invocation (``observed_cold``)
_held: ContextVar[list | None] = ContextVar("tidegate_burst_held", default=None)
SMOOTHING = 0.3  # weight of a new cold start in the learnt one
RUN_WINDOW = 200  # warm answers behind the run-time tail
# how long an answered instance is counted idle where the platform's keep-alive is not known:
# below both cloud platforms' idle lifetimes (Lambda's unpublished, "a non-deterministic
# period"; Function Compute's "usually 3 to 5 minutes"). Forgotten too early, an instance only
# makes a spill start another the platform still had; remembered too long, a spill sent as
# warm meets a cold start ([burst] instance_idle_s; the local runtime's keep_alive_s)
DEFAULT_KEEP_ALIVE_S = 60.0


class InstanceGate(SlotGate):
    """``SlotGate`` (concurrency slots, FIFO, bounded) after the wait for a started instance."""

    def __init__(
        self,
        capacity: int,
        *,
        max_waiting: int = 64,
        max_wait_s: float = 30.0,
        keep_alive_s: float | None = None,  # None: DEFAULT_KEEP_ALIVE_S
        cold_start_ms: float = 3000.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(capacity, max_waiting=max_waiting, max_wait_s=max_wait_s, clock=clock)
        self.keep_alive_s = DEFAULT_KEEP_ALIVE_S if keep_alive_s is None else keep_alive_s
        self.cold_start_ms = cold_start_ms  # until one is learnt
        self._idle: deque[float] = deque()  # when each idle instance group was last used
        self._busy: dict[int, tuple[float, bool]] = {}  # token -> (invoked at, cold)
        self._instance_waiters: deque[asyncio.Future] = deque()
        self._runs_ms: deque[float] = deque(maxlen=RUN_WINDOW)
        self._next_token = 0
        self.waited = 0  # requests that waited for a started instance
        self.cold_started = 0  # requests sent with no instance known idle

    # what the gate predicts ---------------------------------------------------------------------

    def run_ms(self, quantile: float = 0.5) -> float | None:
        """The warm answers' run time at ``quantile`` (None before any)."""
        if not self._runs_ms:
            return None
        ordered = sorted(self._runs_ms)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def _predicted_busy(self, now: float, run_s: float) -> list[tuple[float, float]]:
        cold_s = self.cold_start_ms / 1000.0
        out = []
        for invoked_s, cold in self._busy.values():
            up_s = invoked_s + cold_s if cold else invoked_s
            # one already past its predicted end is taken to need another run, not to be free
            # now: counted free, it drew waiters that then waited out the whole limit
            free_s = up_s + run_s if up_s + run_s > now else now + run_s
            out.append((free_s, up_s))
        return out

    def decide(self, now: float, slo_ms: float | None) -> float | None:
        """The predicted wait (ms) for a started instance, if the rule says wait; else None
        (invoke now)."""
        run_p50, run_tail = self.run_ms(0.5), self.run_ms(0.99)
        if run_p50 is None or slo_ms is None or not self._busy:
            return None
        free_s, up_s = next_free(
            self._predicted_busy(now, run_p50 / 1000.0),
            len(self._instance_waiters),
            run_p50 / 1000.0,
        )
        wait_ms = max(free_s - now, 0.0) * 1000.0
        wait = should_wait(
            wait_ms, cold_ms=self.cold_start_ms, run_ms=run_tail, slo_ms=slo_ms, starting=up_s > now
        )
        return wait_ms if wait else None

    # admission ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def hold(self, slots: int, slo_ms: float | None = None):
        """Wait for a started instance if the rule says so (``slo_ms``: the request's SLO, else
        ``request_slo_ms``), then hold ``slots`` (``Busy`` if refused) for the body."""
        cold = await self._instance(request_slo_ms.get() if slo_ms is None else slo_ms)
        self._next_token += 1
        token = self._next_token
        ok, elapsed_ms, invoked = False, None, False
        observed: list = [None]  # the platform's word on a cold start, if the body reports it
        reset = _held.set(observed)
        try:
            async with super().hold(slots):
                invoked, t0 = True, self._clock()
                self._busy[token] = (t0, cold)
                yield
                ok, elapsed_ms = True, (self._clock() - t0) * 1000.0
        finally:
            _held.reset(reset)
            if invoked:
                self._finished(token, cold, ok, elapsed_ms, observed[0])
            elif not cold:  # refused before invoking: the instance it was given is still free
                self._hand_on()

    async def _instance(self, slo_ms: float | None) -> bool:
        """Take an idle instance, or wait for a started one, or neither: True if the
        invocation will meet no idle instance the gate knows of (a cold start)."""
        now = self._clock()
        horizon = now - self.keep_alive_s
        while self._idle and self._idle[0] < horizon:
            self._idle.popleft()
        if self._idle:
            self._idle.pop()
            return False
        wait_ms = self.decide(now, slo_ms)
        if wait_ms is None:
            self.cold_started += 1
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._instance_waiters.append(waiter)
        # a prediction that was wrong must not hold a request much past it: after the predicted
        # wait and a run's tail the request starts its own instance
        limit_s = (wait_ms + (self.run_ms(0.99) or 0.0)) / 1000.0
        try:
            warm = await asyncio.wait_for(asyncio.shield(waiter), limit_s)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._hand_on()  # handed an instance just as we gave up: pass it on
            waiter.cancel()
            if waiter in self._instance_waiters:
                self._instance_waiters.remove(waiter)
            if isinstance(exc, asyncio.CancelledError):
                raise
            warm = False
        self.waited += 1
        if not warm:
            self.cold_started += 1
        return not warm

    def _finished(
        self, token: int, cold: bool, ok: bool, elapsed_ms: float | None, observed: bool | None
    ) -> None:
        self._busy.pop(token, None)
        if ok and elapsed_ms is not None:
            if observed is None:
                self._learn(cold, elapsed_ms)
            else:
                self._learn_observed(observed, elapsed_ms)
        if ok:
            self._hand_on()
        elif self._instance_waiters:  # the instance may be gone: the first waiter starts one
            waiter = self._instance_waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)

    def _hand_on(self) -> None:
        """An instance is free: to the first waiter, else idle."""
        while self._instance_waiters:
            waiter = self._instance_waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self._idle.append(self._clock())

    def _learn(self, cold: bool, elapsed_ms: float) -> None:
        run_ms = self.run_ms(0.5)
        if not cold:
            self._runs_ms.append(elapsed_ms)
        elif run_ms is None:
            return  # a cold start and a run that cannot be told apart yet
        elif elapsed_ms > 2 * run_ms:
            penalty_ms = elapsed_ms - run_ms
            self.cold_start_ms = (1 - SMOOTHING) * self.cold_start_ms + SMOOTHING * penalty_ms
        else:
            # sent as cold but answered about as fast as a warm one: it met an instance the
            # gate did not know of (prewarmed, or freed meanwhile)
            self._runs_ms.append(elapsed_ms)

    def _learn_observed(self, cold: bool, elapsed_ms: float) -> None:
        """Learn from an answer whose cold start the platform stated."""
        if not cold:
            self._runs_ms.append(elapsed_ms)
        elif (run_ms := self.run_ms(0.5)) is not None:
            penalty_ms = max(elapsed_ms - run_ms, 0.0)
            self.cold_start_ms = (1 - SMOOTHING) * self.cold_start_ms + SMOOTHING * penalty_ms


def observed_cold(cold: bool) -> None:
    """Tell the gate holding this task's invocation whether the platform started it cold (any
    of its instances: the group waited for the slowest). Outside a hold: nothing."""
    held = _held.get()
    if held is not None:
        held[0] = bool(cold)
