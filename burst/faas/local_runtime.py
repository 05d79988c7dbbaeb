"""The embedded function runtime: a pool of instance processes behind Lambda's Invoke REST API.

Each function instance is its own OS process (``burst.faas.instances``) with real cold starts,
one invocation at a time, keep-alive, a global and per-function concurrency cap and a memory
budget (``burst.faas.admission``), a per-function timeout and an enforced memory size
(``burst.faas.watchdog``), and a bill per invocation at 1 ms (``burst.faas.billing``).
Instances are started, stopped and reaped by ``burst.faas.instance_pool``.
``LocalFunctionRuntime.invoke`` is the core; ``burst.faas.lambda_api`` serves it over HTTP.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from dataclasses import dataclass

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
from burst.faas.instance_pool import InstancePool
from burst.faas.instances import Frame, Instance, Outcome
from burst.faas.lambda_wire import DEFAULT_MAX_PAYLOAD_BYTES, RuntimeApiError, error_payload

__all__ = [
    "LocalFunctionRuntime",
    "FunctionSpec",
    "FunctionExists",
    "RuntimeApiError",
    "Invocation",
    "BillingRecord",
]


@dataclass
class _Call:
    """What every outcome of one invocation is billed with."""

    spec: FunctionSpec
    request_id: str
    start_unix_s: float
    cold: bool
    init_ms: float = 0.0
    logs: str = ""  # the instance's init logs, on a cold start


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
        self.max_payload_bytes = max_payload_bytes
        self._functions: dict[str, FunctionState] = {}
        self._pool = InstancePool(
            self._functions,
            self.admission,
            keep_alive_s=keep_alive_s,
            init_timeout_s=init_timeout_s,
            memory_poll_s=memory_poll_ms / 1000.0,
        )
        self._billing: deque[BillingRecord] = deque(maxlen=max_billing_records)
        self._reaper: asyncio.Task | None = None
        self._server = None
        self.endpoint = ""
        for spec in functions:
            self.add_function(spec)

    @property
    def concurrency(self) -> int:
        return self.admission.concurrency

    @property
    def keep_alive_s(self) -> float:
        return self._pool.keep_alive_s

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
        self._pool.stop_all(state)

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

        self._pool.keep(asyncio.create_task(run()))

    async def _run(self, state: FunctionState, payload: bytes) -> Invocation:
        call = _Call(state.spec, str(uuid.uuid4()), time.time(), cold=not state.idle)
        if call.cold:
            t0 = time.perf_counter()
            inst, failure = await self._pool.start(state)
            if failure is not None:
                call.init_ms = (time.perf_counter() - t0) * 1000.0
                return self._record(
                    call,
                    call.init_ms,
                    failure.peak_mb,
                    failure.body,
                    failure.error_type,
                    failure.logs,
                )
            call.init_ms = inst.init_ms
            call.logs, inst.init_logs = inst.init_logs, ""
        else:
            inst = state.idle.pop()
        frame, elapsed_ms = await self._pool.exchange(state, inst, call.request_id, payload)
        if frame.outcome is Outcome.OK:
            return self._succeeded(state, inst, frame, call)
        spec = call.spec
        code = await instances.exit_code(inst) if frame.outcome is Outcome.CRASH else None
        self._pool.stop(inst)
        error_type, message = instances.failure(
            frame, spec.timeout_s, spec.memory_mb, call.request_id, code
        )
        body = error_payload(error_type, message, call.request_id)
        return self._record(
            call, elapsed_ms, frame.peak_mb, body, error_type, call.logs + message + "\n"
        )

    def _succeeded(
        self, state: FunctionState, inst: Instance, frame: Frame, call: _Call
    ) -> Invocation:
        spec, meta, body = state.spec, frame.meta, frame.body
        inst.last_used = time.monotonic()
        if self._pool.closing or self._functions.get(spec.name) is not state:
            self._pool.stop(inst)  # stopped or deleted meanwhile
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
                call.request_id,
            )
        logs = call.logs + meta.get("logs", "")
        return self._record(call, meta["duration_ms"], frame.peak_mb, body, error_type, logs)

    def _record(
        self,
        call: _Call,
        duration_ms: float,
        peak: int,
        body: bytes,
        error_type: str | None,
        logs: str,
    ) -> Invocation:
        invocation = bill(
            function=call.spec.name,
            memory_mb=call.spec.memory_mb,
            request_id=call.request_id,
            start_unix_s=call.start_unix_s,
            duration_ms=duration_ms,
            peak_mb=peak,
            cold=call.cold,
            init_ms=call.init_ms,
            body=body,
            error_type=error_type,
            logs=logs,
        )
        self._billing.append(invocation.billing)
        return invocation

    # ---- instances -------------------------------------------------------------------------
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
        return await self._pool.prewarm(state, n, function)

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> str:
        """Serve Lambda's API on (host, port); port 0 picks a free one. Returns the endpoint."""
        from burst.faas.lambda_api import LambdaApiServer

        self._server = LambdaApiServer(self, self.host, self.port)
        self.endpoint = await self._server.start()
        self.port = self._server.port
        self._reaper = asyncio.create_task(self._pool.reap_idle())
        return self.endpoint

    async def stop(self) -> None:
        """Stop every instance, then the server."""
        self._pool.closing = True
        if self._reaper is not None:
            self._reaper.cancel()
        for state in self._functions.values():
            self._pool.stop_all(state)
        if self._pool.background:
            await asyncio.wait(set(self._pool.background), timeout=5.0)
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
