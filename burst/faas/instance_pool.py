"""The instance processes of a local runtime's functions, within its memory budget.

Starting an instance (a cold start) first stops idle ones, least recently used first, until its
memory size fits the budget (``burst.faas.admission``); idle instances are stopped after the
keep-alive; stopping one gives its memory back. ``exchange`` sends one invocation to one
instance under the memory watchdog and the timeout; ``burst.faas.local_runtime`` is the core.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson

from burst.faas import instances
from burst.faas.admission import Admission
from burst.faas.functions import FunctionState
from burst.faas.instances import Frame, Instance, Outcome
from burst.faas.lambda_wire import RuntimeApiError, error_payload, throttled
from burst.faas.watchdog import peak_mb, reset_peak


@dataclass
class InitFailure:
    """An instance that did not initialise: what its (cold) invocation answers and is billed."""

    error_type: str
    body: bytes  # Lambda's error payload
    logs: str
    peak_mb: int


class InstancePool:
    """Starts, stops and reaps the instances of ``functions`` (shared with the runtime)."""

    def __init__(
        self,
        functions: dict[str, FunctionState],
        admission: Admission,
        *,
        keep_alive_s: float,
        init_timeout_s: float,
        memory_poll_s: float,
    ):
        self._functions = functions
        self.admission = admission
        self.keep_alive_s = keep_alive_s
        self.init_timeout_s = init_timeout_s
        self.memory_poll_s = memory_poll_s
        self.background: set = set()
        self.closing = False  # set when the runtime stops: no instance goes back to idle

    async def start(self, state: FunctionState) -> tuple[Instance | None, InitFailure | None]:
        """Spawn and initialise one instance: (instance, None) or (None, failure)."""
        spec = state.spec
        if not self._make_room(spec.memory_mb):
            raise throttled("MemoryBudgetExceeded")
        self.admission.reserve(spec.memory_mb)
        t0 = time.perf_counter()
        try:
            inst = await instances.spawn(spec.name, spec.handler, spec.memory_mb, spec.environment)
        except BaseException:
            self.admission.unreserve(spec.memory_mb)
            raise
        try:
            frame = await instances.next_frame(
                inst, self.init_timeout_s, spec.memory_mb, self.memory_poll_s
            )
        except BaseException:
            self.stop(inst)
            raise
        inst.init_ms = (time.perf_counter() - t0) * 1000.0
        if frame.outcome is Outcome.OK and frame.meta.get("type") == "ready" and not self.closing:
            inst.last_used = time.monotonic()
            return inst, None
        self.stop(inst)
        if frame.outcome is Outcome.OK and frame.meta.get("type") == "init_error":
            error = orjson.loads(frame.body)  # the handler module failed to import
            return None, InitFailure(
                error["errorType"], frame.body, frame.meta.get("logs", ""), frame.peak_mb
            )
        error_type = "Runtime.Shutdown" if self.closing else instances.FAILED_INIT[frame.outcome]
        message = f"Init failed: {error_type} after {inst.init_ms:.0f} ms (peak {frame.peak_mb} MB)"
        return None, InitFailure(
            error_type, error_payload(error_type, message, ""), message + "\n", frame.peak_mb
        )

    async def prewarm(self, state: FunctionState, n: int, function: str) -> int:
        """Start instances until ``n`` are idle; return how many started. A 500 if one failed
        to initialise (the others stay warm)."""
        missing = max(0, n - len(state.idle))
        results = await asyncio.gather(*(self.start(state) for _ in range(missing)))
        started = [inst for inst, _ in results if inst is not None]
        state.idle.extend(started)
        if len(started) < missing:
            failure = next(f for _, f in results if f is not None)
            raise RuntimeApiError(
                500,
                "ServiceException",
                f"prewarm of {function!r} failed: {failure.error_type}: "
                f"{orjson.loads(failure.body).get('errorMessage')}",
            )
        return len(started)

    async def exchange(
        self, state: FunctionState, inst: Instance, request_id: str, payload: bytes
    ) -> tuple[Frame, float]:
        """Send one invocation to an instance (busy meanwhile): its answer frame and elapsed ms.
        An instance over its memory size between two watchdog polls is killed, as on Lambda."""
        spec = state.spec
        state.busy.add(inst)
        reset_peak(inst.pid)
        t0 = time.perf_counter()
        try:
            inst.send_invoke(request_id, spec.timeout_s, payload)
            frame = await instances.next_frame(
                inst, spec.timeout_s, spec.memory_mb, self.memory_poll_s
            )
        except BaseException:
            self.stop(inst)  # cancelled mid-invocation: its state is unknown
            raise
        finally:
            state.busy.discard(inst)
        elapsed_ms = (time.perf_counter() - t0) * 1000.0
        if frame.outcome is Outcome.OK:
            frame.peak_mb = peak_mb(inst.pid)
            if frame.peak_mb > spec.memory_mb:
                frame.outcome = Outcome.OOM
        return frame, elapsed_ms

    def _make_room(self, memory_mb: int) -> bool:
        """Stop idle instances, least recently used first, until ``memory_mb`` more fits the
        budget; False if busy instances alone leave no room."""
        idle = sorted(
            ((inst, s) for s in self._functions.values() for inst in s.idle),
            key=lambda pair: pair[0].last_used,
        )
        for inst, state in idle:
            if self.admission.fits(memory_mb):
                break
            state.idle.remove(inst)
            self.stop(inst)
        return self.admission.fits(memory_mb)

    def stop(self, inst: Instance) -> None:
        if inst.stopped:
            return
        inst.stopped = True
        self.admission.unreserve(inst.memory_mb)
        instances.stop(inst, self.background)

    def stop_all(self, state: FunctionState) -> None:
        """Stop every instance of a function, idle or busy (removed, or the runtime stopping)."""
        for inst in state.idle + list(state.busy):
            self.stop(inst)
        state.idle.clear()

    def keep(self, task) -> None:
        """Hold a background task until it is done (``stop`` waits for these)."""
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def reap_idle(self) -> None:
        """Forever: stop instances idle for the keep-alive."""
        interval_s = min(1.0, self.keep_alive_s / 4)
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            for state in list(self._functions.values()):
                for inst in [i for i in state.idle if now - i.last_used >= self.keep_alive_s]:
                    state.idle.remove(inst)
                    self.stop(inst)
