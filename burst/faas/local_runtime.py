"""The embedded function runtime: a pool of instance processes behind Lambda's Invoke REST API.

Each function instance is its own OS process (``burst.faas.instances``) with real cold starts,
one invocation at a time, keep-alive, a global and per-function concurrency cap and a memory
budget (``burst.faas.admission``), a per-function timeout and an enforced memory size
(``burst.faas.watchdog``), and a bill per invocation at 1 ms (``burst.faas.billing``).
``LocalFunctionRuntime.invoke`` is the core; ``burst.faas.lambda_api`` serves it over HTTP.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque

import orjson

from burst.faas import instances
from burst.faas.admission import Admission, default_memory_budget_mb
from burst.faas.billing import BillingRecord, Invocation, bill
from burst.faas.functions import (
    FunctionExists,
    FunctionSpec,
    FunctionState,
    function_name_from_path,
)
from burst.faas.instances import Instance, Outcome
from burst.faas.lambda_wire import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    RuntimeApiError,
    error_payload,
    throttled,
)
from burst.faas.watchdog import peak_mb, reset_peak

__all__ = [
    "LocalFunctionRuntime",
    "FunctionSpec",
    "FunctionExists",
    "RuntimeApiError",
    "Invocation",
    "BillingRecord",
]


class LocalFunctionRuntime:
    """A Lambda-like function runtime on loopback. ``await start()`` returns its endpoint URL."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        concurrency: int = 16,
        keep_alive_s: float = 300.0,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        memory_poll_ms: float = 5.0,
        init_timeout_s: float = 60.0,
        functions: list[FunctionSpec] | tuple = (),
        max_billing_records: int = 100_000,
        memory_budget_mb: int | None = None,
    ):
        if keep_alive_s <= 0:
            raise ValueError("keep_alive_s must be > 0")
        self.host, self.port = host, port
        self.admission = Admission(concurrency, memory_budget_mb or default_memory_budget_mb())
        self.keep_alive_s = keep_alive_s
        self.max_payload_bytes = max_payload_bytes
        self.memory_poll_s = memory_poll_ms / 1000.0
        self.init_timeout_s = init_timeout_s
        self._functions: dict[str, FunctionState] = {}
        self._billing: deque[BillingRecord] = deque(maxlen=max_billing_records)
        self._background: set = set()
        self._reaper: asyncio.Task | None = None
        self._server = None
        self.endpoint = ""
        self._closing = False
        for spec in functions:
            self.add_function(spec)

    @property
    def concurrency(self) -> int:
        return self.admission.concurrency

    # ---- functions -------------------------------------------------------------------------
    def add_function(self, spec: FunctionSpec) -> None:
        """Register a function; ValueError on bad config, FunctionExists on a taken name."""
        spec.validate()
        if spec.name in self._functions:
            raise FunctionExists(f"function {spec.name!r} already exists")
        if spec.memory_mb > self.admission.memory_budget_mb:
            raise ValueError(
                f"memory_mb {spec.memory_mb} exceeds the runtime's memory budget "
                f"({self.admission.memory_budget_mb} MB)"
            )
        if (spec.reserved_concurrency or 0) + self._reserved_concurrency() > self.concurrency:
            raise ValueError(
                f"reserved concurrency {spec.reserved_concurrency} exceeds what is "
                f"left of the runtime's cap "
                f"({self.concurrency - self._reserved_concurrency()})"
            )
        self._functions[spec.name] = FunctionState(spec)

    def _reserved_concurrency(self, but=None) -> int:
        return sum(
            s.spec.reserved_concurrency or 0 for s in self._functions.values() if s is not but
        )

    def functions(self) -> list[FunctionSpec]:
        return [s.spec for s in self._functions.values()]

    def get_function(self, name: str) -> FunctionSpec:
        """The function's spec; a 404 RuntimeApiError if there is none."""
        return self._state(name).spec

    def set_reserved_concurrency(self, name: str, reserved: int | None) -> None:
        state = self._state(name)
        others = self._reserved_concurrency(but=state)
        if reserved is not None and (reserved < 0 or reserved + others > self.concurrency):
            raise RuntimeApiError(
                400,
                "InvalidParameterValueException",
                f"ReservedConcurrentExecutions {reserved} must be between 0 "
                f"and {self.concurrency - others}",
            )
        state.spec.reserved_concurrency = reserved

    async def remove_function(self, name: str) -> None:
        state = self._functions.pop(function_name_from_path(name), None)
        if state is None:
            raise RuntimeApiError(404, "ResourceNotFoundException", f"Function not found: {name}")
        for inst in state.idle + list(state.busy):
            self._stop_instance(inst)
        state.idle.clear()

    def billing(self, function: str | None = None) -> list[BillingRecord]:
        return [r for r in self._billing if function is None or r.function == function]

    def instance_count(self, function: str | None = None) -> int:
        states = [self._state(function)] if function else list(self._functions.values())
        return sum(len(s.idle) + len(s.busy) for s in states)

    def health(self) -> dict:
        """What a supervisor or an admitting caller needs: caps, what is in use, what is free."""
        a = self.admission
        return {
            "status": "ok",
            "functions": len(self._functions),
            "concurrency": a.concurrency,
            "in_flight": a.in_flight,
            "free_concurrency": a.free_concurrency(),
            "instances": self.instance_count(),
            "memory_budget_mb": a.memory_budget_mb,
            "memory_reserved_mb": a.reserved_mb,
        }

    def _state(self, name: str) -> FunctionState:
        state = self._functions.get(function_name_from_path(name))
        if state is None:
            raise RuntimeApiError(
                404,
                "ResourceNotFoundException",
                f"Function not found: arn:aws:lambda:local:000000000000:function:{name}",
            )
        return state

    # ---- invocation (the core) -------------------------------------------------------------
    async def invoke(self, function: str, payload: bytes) -> Invocation:
        """Run one invocation. Platform errors raise RuntimeApiError; function errors return."""
        state = self._state(function)
        if len(payload) > self.max_payload_bytes:
            raise RuntimeApiError(
                413,
                "RequestEntityTooLargeException",
                f"Request must be smaller than {self.max_payload_bytes} bytes "
                f"for the InvokeFunction operation",
            )
        if payload:
            try:
                orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise RuntimeApiError(
                    400,
                    "InvalidRequestContentException",
                    f"Could not parse request body into json: {exc}",
                ) from None
        self.admission.admit(state, self._reserved_concurrency())
        try:
            return await self._run(state, payload)
        finally:
            self.admission.release(state)

    def invoke_event(self, function: str, payload: bytes) -> None:
        """An asynchronous (Event) invocation, run in the background; its outcome is only
        billed and logged, as on Lambda without a destination."""
        self._state(function)

        async def run() -> None:
            try:
                await self.invoke(function, payload)
            except RuntimeApiError:
                pass  # throttled or removed meanwhile: Lambda would retry; we drop it

        self._keep(asyncio.create_task(run()))

    async def _run(self, state: FunctionState, payload: bytes) -> Invocation:
        spec = state.spec
        request_id = str(uuid.uuid4())
        start_unix_s = time.time()
        cold = not state.idle
        logs = ""
        if cold:
            t0 = time.perf_counter()
            inst, failure = await self._start_instance(state)
            if failure is not None:
                error_type, body, logs, peak = failure
                elapsed_ms = (time.perf_counter() - t0) * 1000.0
                return self._record(
                    spec,
                    request_id,
                    start_unix_s,
                    elapsed_ms,
                    peak,
                    True,
                    elapsed_ms,
                    body,
                    error_type,
                    logs,
                )
            logs, inst.init_logs = inst.init_logs, ""
        else:
            inst = state.idle.pop()
        state.busy.add(inst)
        reset_peak(inst.pid)
        t0 = time.perf_counter()
        try:
            inst.send_invoke(request_id, spec.timeout_s, payload)
            frame = await instances.next_frame(
                inst, spec.timeout_s, spec.memory_mb, self.memory_poll_s
            )
        except BaseException:
            self._stop_instance(inst)  # cancelled mid-invocation: its state is unknown
            raise
        finally:
            state.busy.discard(inst)
        elapsed_ms = (time.perf_counter() - t0) * 1000.0
        init_ms = inst.init_ms if cold else 0.0
        if frame.outcome is Outcome.OK:
            frame.peak_mb = peak_mb(inst.pid)
            if frame.peak_mb > spec.memory_mb:
                frame.outcome = Outcome.OOM  # over its size between two polls: Lambda kills it
        if frame.outcome is Outcome.OK:
            return self._succeeded(
                state, inst, frame, request_id, start_unix_s, cold, init_ms, logs
            )
        code = await instances.exit_code(inst) if frame.outcome is Outcome.CRASH else None
        self._stop_instance(inst)
        error_type, message = instances.failure(
            frame, spec.timeout_s, spec.memory_mb, request_id, code
        )
        return self._record(
            spec,
            request_id,
            start_unix_s,
            elapsed_ms,
            frame.peak_mb,
            cold,
            init_ms,
            error_payload(error_type, message, request_id),
            error_type,
            logs + message + "\n",
        )

    def _succeeded(
        self, state, inst, frame, request_id, start_unix_s, cold, init_ms, logs
    ) -> Invocation:
        spec, meta, body = state.spec, frame.meta, frame.body
        logs += meta.get("logs", "")
        inst.last_used = time.monotonic()
        if self._closing or self._functions.get(spec.name) is not state:
            self._stop_instance(inst)  # stopped or deleted meanwhile
        else:
            state.idle.append(inst)
        error_type = None
        if not meta["ok"]:
            error_type = orjson.loads(body).get("errorType", "Unhandled")
        elif len(body) > self.max_payload_bytes:
            error_type = "Function.ResponseSizeTooLarge"
            body = error_payload(
                error_type,
                f"Response payload size ({len(body)} bytes) "
                f"exceeded maximum allowed payload size "
                f"({self.max_payload_bytes} bytes).",
                request_id,
            )
        return self._record(
            spec,
            request_id,
            start_unix_s,
            meta["duration_ms"],
            frame.peak_mb,
            cold,
            init_ms,
            body,
            error_type,
            logs,
        )

    def _record(
        self,
        spec,
        request_id,
        start_unix_s,
        duration_ms,
        peak,
        cold,
        init_ms,
        body,
        error_type,
        logs,
    ) -> Invocation:
        invocation = bill(
            function=spec.name,
            memory_mb=spec.memory_mb,
            request_id=request_id,
            start_unix_s=start_unix_s,
            duration_ms=duration_ms,
            peak_mb=peak,
            cold=cold,
            init_ms=init_ms,
            body=body,
            error_type=error_type,
            logs=logs,
        )
        self._billing.append(invocation.billing)
        return invocation

    # ---- instances -------------------------------------------------------------------------
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
            self._stop_instance(inst)
        return self.admission.fits(memory_mb)

    async def _start_instance(self, state: FunctionState):
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
            self._stop_instance(inst)
            raise
        inst.init_ms = (time.perf_counter() - t0) * 1000.0
        if frame.outcome is Outcome.OK and frame.meta.get("type") == "ready" and not self._closing:
            inst.last_used = time.monotonic()
            return inst, None
        self._stop_instance(inst)
        if frame.outcome is Outcome.OK and frame.meta.get("type") == "init_error":
            error = orjson.loads(frame.body)  # the handler module failed to import
            return None, (error["errorType"], frame.body, frame.meta.get("logs", ""), frame.peak_mb)
        error_type = "Runtime.Shutdown" if self._closing else instances.FAILED_INIT[frame.outcome]
        message = f"Init failed: {error_type} after {inst.init_ms:.0f} ms (peak {frame.peak_mb} MB)"
        return None, (
            error_type,
            error_payload(error_type, message, ""),
            message + "\n",
            frame.peak_mb,
        )

    async def prewarm(self, function: str, n: int) -> int:
        """Bring the function's idle warm instances up to at least ``n``; return how many
        were started. Their first invocation is warm (like provisioned concurrency)."""
        state = self._state(function)
        if not 0 <= n <= self.concurrency:
            raise RuntimeApiError(
                400,
                "InvalidParameterValueException",
                f"prewarm count {n} must be between 0 and {self.concurrency}",
            )
        missing = max(0, n - len(state.idle))
        results = await asyncio.gather(*(self._start_instance(state) for _ in range(missing)))
        started = [inst for inst, _ in results if inst is not None]
        state.idle.extend(started)
        if len(started) < missing:
            failure = next(f for _, f in results if f is not None)
            raise RuntimeApiError(
                500,
                "ServiceException",
                f"prewarm of {function!r} failed: {failure[0]}: "
                f"{orjson.loads(failure[1]).get('errorMessage')}",
            )
        return len(started)

    def _stop_instance(self, inst: Instance) -> None:
        if inst.stopped:
            return
        inst.stopped = True
        self.admission.unreserve(inst.memory_mb)
        instances.stop(inst, self._background)

    def _keep(self, task) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reap_idle(self) -> None:
        interval_s = min(1.0, self.keep_alive_s / 4)
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            for state in list(self._functions.values()):
                for inst in [i for i in state.idle if now - i.last_used >= self.keep_alive_s]:
                    state.idle.remove(inst)
                    self._stop_instance(inst)

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> str:
        """Serve Lambda's API on (host, port); port 0 picks a free one. Returns the endpoint."""
        from burst.faas.lambda_api import LambdaApiServer

        self._server = LambdaApiServer(self, self.host, self.port)
        self.endpoint = await self._server.start()
        self.port = self._server.port
        self._reaper = asyncio.create_task(self._reap_idle())
        return self.endpoint

    async def stop(self) -> None:
        """Stop every instance, then the server."""
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
        for state in self._functions.values():
            for inst in state.idle + list(state.busy):
                self._stop_instance(inst)
            state.idle.clear()
        if self._background:
            await asyncio.wait(set(self._background), timeout=5.0)
        if self._server is not None:
            await self._server.stop()
            self._server = None

    def start_in_thread(self) -> str:
        """Run the runtime on its own event loop in a daemon thread; returns the endpoint."""
        from burst.faas.lambda_api import start_in_thread

        self._thread_handle = start_in_thread(self)
        return self.endpoint

    def stop_thread(self) -> None:
        handle = getattr(self, "_thread_handle", None)
        if handle is not None:
            handle.stop()
            self._thread_handle = None
