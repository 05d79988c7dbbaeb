"""The embedded function runtime: a pool of instance processes behind Lambda's Invoke REST API.

Each function instance is its own OS process (``burst.faas.instance``) with real cold starts,
one invocation at a time, keep-alive, a global and per-function concurrency cap, a per-function
timeout and an enforced memory size, and a billing record per invocation at 1 ms granularity.
``LocalFunctionRuntime.invoke`` is the core; the aiohttp routes only translate HTTP to it.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp import web

from burst.faas.instance import encode_frame

DEFAULT_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous request/response limit
LOG_TAIL_BYTES = 4096  # Lambda returns the last 4 KB of the log
_HEADER = struct.Struct(">II")
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
_API = "/2015-03-31"


class RuntimeApiError(Exception):
    """A platform-level error with its HTTP status and Lambda error type (not a function error)."""

    def __init__(self, status: int, error_type: str, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.extra = extra

    def body(self) -> dict:
        # ResourceNotFoundException spells it "Message" in Lambda's service model; others "message"
        key = "Message" if self.error_type == "ResourceNotFoundException" else "message"
        return {"Type": "User", key: str(self), **self.extra}


@dataclass
class FunctionSpec:
    """A function's configuration (the CreateFunction subset the runtime honours)."""

    name: str
    handler: str  # "module:function", importable in the instance process
    memory_mb: int = 128  # Lambda's defaults
    timeout_s: float = 3.0
    environment: dict[str, str] = field(default_factory=dict)
    reserved_concurrency: int | None = None

    def validate(self) -> None:
        if not self.name or len(self.name) > 64 or ":" in self.name or "/" in self.name:
            raise ValueError(f"function name {self.name!r} must be 1-64 chars without ':' or '/'")
        if ":" not in self.handler and "." not in self.handler:
            raise ValueError(f"handler {self.handler!r} must be module:function")
        if not 64 <= self.memory_mb <= 10240:
            raise ValueError(f"memory_mb {self.memory_mb} must be between 64 and 10240")
        if not 0 < self.timeout_s <= 900:
            raise ValueError(f"timeout_s {self.timeout_s} must be in (0, 900]")
        if self.reserved_concurrency is not None and self.reserved_concurrency < 0:
            raise ValueError("reserved_concurrency must be >= 0")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.environment.items()):
            raise ValueError("environment variables must map strings to strings")

    def configuration(self) -> dict:
        """Lambda's FunctionConfiguration shape."""
        return {
            "FunctionName": self.name,
            "FunctionArn": f"arn:aws:lambda:local:000000000000:function:{self.name}",
            "Runtime": f"python{sys.version_info.major}.{sys.version_info.minor}",
            "Handler": self.handler, "MemorySize": self.memory_mb,
            "Timeout": math.ceil(self.timeout_s),  # an integer number of seconds in Lambda's API
            "Environment": {"Variables": dict(self.environment)},
            "State": "Active", "LastUpdateStatus": "Successful", "PackageType": "Zip",
            "Version": "$LATEST",
        }


@dataclass
class BillingRecord:
    """One invocation's bill, as Lambda's REPORT line states it."""

    request_id: str
    function: str
    start_unix_s: float
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_used_mb: int
    cold_start: bool
    init_ms: float
    error_type: str | None = None

    def report_line(self) -> str:
        line = (f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
                f"Billed Duration: {self.billed_ms} ms\tMemory Size: {self.memory_mb} MB\t"
                f"Max Memory Used: {self.max_memory_used_mb} MB\t")
        if self.cold_start:
            line += f"Init Duration: {self.init_ms:.2f} ms\t"
        if self.error_type == "Sandbox.Timedout":
            line += "Status: timeout"
        elif self.error_type in ("Runtime.OutOfMemory", "Runtime.ExitError"):
            line += f"Status: error\tError Type: {self.error_type}"
        return line


@dataclass
class Invocation:
    """What the core returns: the payload (result or error JSON) plus log tail and bill."""

    payload: bytes
    error_type: str | None  # None on success; else the errorType in the payload
    log_tail: str
    billing: BillingRecord


class _Instance:
    def __init__(self, proc: subprocess.Popen, reader, writer):
        self.proc = proc
        self.reader: asyncio.StreamReader = reader
        self.writer: asyncio.StreamWriter = writer
        self.init_ms = 0.0
        self.init_logs = ""
        self.last_used = time.monotonic()


class _FunctionState:
    def __init__(self, spec: FunctionSpec):
        self.spec = spec
        self.idle: list[_Instance] = []  # LIFO: the warmest instance first; spares age out
        self.busy: set[_Instance] = set()
        self.in_flight = 0


def _status_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a live process in kB; (0, 0) once it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm


def _reset_peak(pid: int) -> None:
    try:  # "5" resets VmHWM to the current RSS, so the peak is per invocation
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _error_payload(error_type: str, message: str, request_id: str) -> bytes:
    return orjson.dumps({"errorMessage": message, "errorType": error_type,
                         "requestId": request_id, "stackTrace": []})


def function_name_from_path(raw: str) -> str:
    """Accept a name, ``name:qualifier``, or a (partial) ARN, as Lambda does."""
    if ":function:" in raw:
        raw = raw.split(":function:", 1)[1]
    return raw.split(":", 1)[0]


class LocalFunctionRuntime:
    """A Lambda-like function runtime on loopback. ``await start()`` returns its endpoint URL."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, concurrency: int = 16,
                 keep_alive_s: float = 300.0, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                 memory_poll_ms: float = 5.0, init_timeout_s: float = 60.0,
                 functions: list[FunctionSpec] | tuple = (), max_billing_records: int = 100_000):
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if keep_alive_s <= 0:
            raise ValueError("keep_alive_s must be > 0")
        self.host, self.port = host, port
        self.concurrency = concurrency
        self.keep_alive_s = keep_alive_s
        self.max_payload_bytes = max_payload_bytes
        self.memory_poll_s = memory_poll_ms / 1000.0
        self.init_timeout_s = init_timeout_s
        self._functions: dict[str, _FunctionState] = {}
        self._in_flight = 0
        self._unreserved_in_flight = 0
        self._billing: deque[BillingRecord] = deque(maxlen=max_billing_records)
        self._background: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self.endpoint = ""
        self._closing = False
        for spec in functions:
            self.add_function(spec)

    # ---- functions -------------------------------------------------------------------------
    def add_function(self, spec: FunctionSpec) -> None:
        """Register a function; ValueError on bad config or a duplicate name."""
        spec.validate()
        if spec.name in self._functions:
            raise ValueError(f"function {spec.name!r} already exists")
        reserved = sum(s.spec.reserved_concurrency or 0 for s in self._functions.values())
        if (spec.reserved_concurrency or 0) + reserved > self.concurrency:
            raise ValueError(f"reserved concurrency {spec.reserved_concurrency} exceeds what is "
                             f"left of the runtime's cap ({self.concurrency - reserved})")
        self._functions[spec.name] = _FunctionState(spec)

    def functions(self) -> list[FunctionSpec]:
        return [s.spec for s in self._functions.values()]

    def get_function(self, name: str) -> FunctionSpec:
        return self._state(name).spec

    def set_reserved_concurrency(self, name: str, reserved: int | None) -> None:
        state = self._state(name)
        others = sum(s.spec.reserved_concurrency or 0
                     for s in self._functions.values() if s is not state)
        if reserved is not None and (reserved < 0 or reserved + others > self.concurrency):
            raise RuntimeApiError(400, "InvalidParameterValueException",
                                  f"ReservedConcurrentExecutions {reserved} must be between 0 "
                                  f"and {self.concurrency - others}")
        state.spec.reserved_concurrency = reserved

    async def remove_function(self, name: str) -> None:
        state = self._functions.pop(function_name_from_path(name), None)
        if state is None:
            raise RuntimeApiError(404, "ResourceNotFoundException", f"Function not found: {name}")
        for inst in state.idle + list(state.busy):
            await self._stop_instance(inst)
        state.idle.clear()

    def billing(self, function: str | None = None) -> list[BillingRecord]:
        return [r for r in self._billing if function is None or r.function == function]

    def instance_count(self, function: str) -> int:
        state = self._state(function)
        return len(state.idle) + len(state.busy)

    def _state(self, name: str) -> _FunctionState:
        state = self._functions.get(function_name_from_path(name))
        if state is None:
            raise RuntimeApiError(404, "ResourceNotFoundException",
                                  f"Function not found: arn:aws:lambda:local:000000000000:"
                                  f"function:{name}")
        return state

    # ---- invocation (the core) -------------------------------------------------------------
    async def invoke(self, function: str, payload: bytes) -> Invocation:
        """Run one invocation. Platform errors raise RuntimeApiError; function errors return."""
        state = self._state(function)
        if len(payload) > self.max_payload_bytes:
            raise RuntimeApiError(413, "RequestEntityTooLargeException",
                                  f"Request must be smaller than {self.max_payload_bytes} bytes "
                                  f"for the InvokeFunction operation")
        if payload:
            try:
                orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise RuntimeApiError(400, "InvalidRequestContentException",
                                      f"Could not parse request body into json: {exc}") from None
        self._admit(state)
        try:
            return await self._run(state, payload)
        finally:
            state.in_flight -= 1
            self._in_flight -= 1
            if state.spec.reserved_concurrency is None:
                self._unreserved_in_flight -= 1

    def _admit(self, state: _FunctionState) -> None:
        reserved = state.spec.reserved_concurrency
        if reserved is not None:
            if state.in_flight >= reserved:
                raise RuntimeApiError(429, "TooManyRequestsException", "Rate Exceeded.",
                                      Reason="ReservedFunctionConcurrentInvocationLimitExceeded")
        else:
            # unreserved functions share what reserved ones leave, as on Lambda
            unreserved_cap = self.concurrency - sum(
                s.spec.reserved_concurrency or 0 for s in self._functions.values())
            if self._unreserved_in_flight >= unreserved_cap or self._in_flight >= self.concurrency:
                raise RuntimeApiError(429, "TooManyRequestsException", "Rate Exceeded.",
                                      Reason="ConcurrentInvocationLimitExceeded")
            self._unreserved_in_flight += 1
        state.in_flight += 1
        self._in_flight += 1

    async def _run(self, state: _FunctionState, payload: bytes) -> Invocation:
        spec = state.spec
        request_id = str(uuid.uuid4())
        start_unix_s = time.time()
        cold = not state.idle
        logs = ""
        if cold:
            t0 = time.perf_counter()
            inst, failure = await self._start_instance(state)
            if failure is not None:
                error_type, body, logs, peak_mb = failure
                elapsed_ms = (time.perf_counter() - t0) * 1000.0
                return self._finish(spec, request_id, start_unix_s, elapsed_ms, peak_mb, True,
                                    elapsed_ms, body, error_type, logs)
            logs, inst.init_logs = inst.init_logs, ""
        else:
            inst = state.idle.pop()
        state.busy.add(inst)
        _reset_peak(inst.proc.pid)
        t0 = time.perf_counter()
        try:
            inst.writer.write(encode_frame(
                {"type": "invoke", "request_id": request_id,
                 "timeout_ms": int(spec.timeout_s * 1000)}, payload))
            outcome, meta, body, peak_mb = await self._await_frame(inst, spec.timeout_s, spec)
        except BaseException:
            await self._stop_instance(inst)  # cancelled mid-invocation: its state is unknown
            raise
        finally:
            state.busy.discard(inst)
        elapsed_ms = (time.perf_counter() - t0) * 1000.0
        init_ms = inst.init_ms if cold else 0.0
        if outcome == "ok":
            peak_mb = math.ceil(_status_kb(inst.proc.pid)[1] / 1024)
            if peak_mb > spec.memory_mb:
                outcome = "oom"  # over its size between two polls: Lambda would have killed it
        if outcome == "ok":
            logs += meta.get("logs", "")
            inst.last_used = time.monotonic()
            if self._closing or self._functions.get(spec.name) is not state:
                await self._stop_instance(inst)  # stopped or deleted meanwhile
            else:
                state.idle.append(inst)
            error_type = None
            if not meta["ok"]:
                error_type = orjson.loads(body).get("errorType", "Unhandled")
            elif len(body) > self.max_payload_bytes:
                error_type = "Function.ResponseSizeTooLarge"
                body = _error_payload(error_type, f"Response payload size ({len(body)} bytes) "
                                      f"exceeded maximum allowed payload size "
                                      f"({self.max_payload_bytes} bytes).", request_id)
            return self._finish(spec, request_id, start_unix_s, meta["duration_ms"], peak_mb,
                                cold, init_ms, body, error_type, logs)
        exit_code = None
        if outcome == "crash":  # the socket closed first; give the exit status a moment
            try:
                exit_code = await asyncio.to_thread(inst.proc.wait, 2.0)
            except subprocess.TimeoutExpired:
                pass
        await self._stop_instance(inst)
        if outcome == "timeout":
            error_type = "Sandbox.Timedout"
            message = (f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {request_id} "
                       f"Task timed out after {spec.timeout_s:.2f} seconds")
        elif outcome == "oom":
            error_type = "Runtime.OutOfMemory"
            message = (f"RequestId: {request_id} Error: Runtime exited with error: signal: killed "
                       f"(memory used {peak_mb} MB exceeded the function's memory size "
                       f"{spec.memory_mb} MB)")
        else:
            error_type = "Runtime.ExitError"
            message = (f"RequestId: {request_id} Error: Runtime exited with error: "
                       f"exit status {exit_code}")
        return self._finish(spec, request_id, start_unix_s, elapsed_ms, peak_mb, cold, init_ms,
                            _error_payload(error_type, message, request_id), error_type,
                            logs + message + "\n")

    def _finish(self, spec, request_id, start_unix_s, duration_ms, peak_mb, cold, init_ms,
                body, error_type, logs) -> Invocation:
        duration_ms = round(duration_ms, 2)
        record = BillingRecord(
            request_id=request_id, function=spec.name, start_unix_s=start_unix_s,
            duration_ms=duration_ms, billed_ms=max(1, math.ceil(duration_ms)),
            memory_mb=spec.memory_mb, max_memory_used_mb=int(peak_mb), cold_start=cold,
            init_ms=round(init_ms, 2), error_type=error_type)
        self._billing.append(record)
        if logs and not logs.endswith("\n"):
            logs += "\n"
        log = (f"START RequestId: {request_id} Version: $LATEST\n{logs}"
               f"END RequestId: {request_id}\n{record.report_line()}\n")
        return Invocation(body, error_type, log, record)

    async def _await_frame(self, inst: _Instance, timeout_s: float, spec: FunctionSpec):
        """Wait for the instance's next frame while enforcing memory; returns
        (outcome in ok|timeout|oom|crash, meta, body, peak_mb)."""
        read = asyncio.ensure_future(_read_frame(inst.reader))
        watch = asyncio.ensure_future(self._watch_memory(inst.proc.pid, spec.memory_mb))
        try:
            done, _ = await asyncio.wait({read, watch}, timeout=timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not read.done():
                read.cancel()
        if watch in done and not watch.cancelled():
            return "oom", {}, b"", watch.result()
        if read in done:
            if read.cancelled() or read.exception() is not None:
                return "crash", {}, b"", math.ceil(_status_kb(inst.proc.pid)[1] / 1024)
            meta, body = read.result()
            return "ok", meta, body, 0
        return "timeout", {}, b"", math.ceil(_status_kb(inst.proc.pid)[1] / 1024)

    async def _watch_memory(self, pid: int, memory_mb: int) -> int:
        """Return (after killing the process) once its peak memory exceeds ``memory_mb``."""
        while True:
            _, hwm_kb = _status_kb(pid)
            if hwm_kb > memory_mb * 1024:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
                return math.ceil(hwm_kb / 1024)
            await asyncio.sleep(self.memory_poll_s)

    # ---- instances -------------------------------------------------------------------------
    async def _start_instance(self, state: _FunctionState):
        """Spawn and initialise one instance: (instance, None) or (None, failure)."""
        spec = state.spec
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        env.update(spec.environment)
        env.update({
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "TIDEGATE_FUNCTION_MEMORY_MB": str(spec.memory_mb),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TIDEGATE_FUNCTION_THREADS": "1",
            "_HANDLER": spec.handler,
            "TIDEGATE_INSTANCE_FD": str(child_sock.fileno()),
            # the project root first, so handlers in this checkout import from any cwd
            "PYTHONPATH": os.pathsep.join(
                p for p in (_PROJECT_ROOT, env.get("PYTHONPATH", "")) if p),
        })
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "burst.faas.instance"], env=env,
                                    pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            child_sock.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent_sock,
                                                            limit=1 << 20)
        inst = _Instance(proc, reader, writer)
        try:
            outcome, meta, body, peak_mb = await self._await_frame(inst, self.init_timeout_s, spec)
        except BaseException:
            await self._stop_instance(inst)
            raise
        inst.init_ms = (time.perf_counter() - t0) * 1000.0
        if self._closing:
            outcome = "closing"
        if outcome == "ok" and meta.get("type") == "ready":
            inst.last_used = time.monotonic()
            return inst, None
        await self._stop_instance(inst)
        if outcome == "ok":  # init_error: the handler module failed to import
            error = orjson.loads(body)
            return None, (error["errorType"], body, meta.get("logs", ""), peak_mb)
        error_type = {"oom": "Runtime.OutOfMemory", "timeout": "Sandbox.Timedout",
                      "closing": "Runtime.Shutdown"}.get(
            outcome, "Runtime.ExitError")
        message = f"Init failed: {error_type} after {inst.init_ms:.0f} ms (peak {peak_mb} MB)"
        return None, (error_type, _error_payload(error_type, message, ""), message + "\n",
                      peak_mb)

    async def prewarm(self, function: str, n: int) -> int:
        """Bring the function's idle warm instances up to at least ``n``; return how many
        were started. Their first invocation is warm (like provisioned concurrency)."""
        state = self._state(function)
        if not 0 <= n <= self.concurrency:
            raise RuntimeApiError(400, "InvalidParameterValueException",
                                  f"prewarm count {n} must be between 0 and {self.concurrency}")
        missing = max(0, n - len(state.idle))
        results = await asyncio.gather(*(self._start_instance(state) for _ in range(missing)))
        started = 0
        for inst, failure in results:
            if inst is not None:
                state.idle.append(inst)
                started += 1
        if started < missing:
            failure = next(f for _, f in results if f is not None)
            raise RuntimeApiError(500, "ServiceException",
                                  f"prewarm of {function!r} failed: {failure[0]}: "
                                  f"{orjson.loads(failure[1]).get('errorMessage')}")
        return started

    async def _stop_instance(self, inst: _Instance) -> None:
        try:
            inst.writer.close()  # EOF: a healthy instance exits on its own
        except Exception:
            pass
        if inst.proc.poll() is None:
            inst.proc.kill()
        task = asyncio.get_running_loop().run_in_executor(None, inst.proc.wait)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _admit_event(self, function: str, payload: bytes) -> None:
        """Run an asynchronous (Event) invocation in the background; its outcome is only
        billed and logged, as on Lambda without a destination."""
        async def run() -> None:
            try:
                await self.invoke(function, payload)
            except RuntimeApiError:
                pass  # throttled or removed meanwhile: Lambda would retry; we drop it

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reap_idle(self) -> None:
        interval_s = min(1.0, self.keep_alive_s / 4)
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            for state in list(self._functions.values()):
                expired = [i for i in state.idle if now - i.last_used >= self.keep_alive_s]
                for inst in expired:
                    state.idle.remove(inst)
                    await self._stop_instance(inst)

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> str:
        """Serve on (host, port); port 0 picks a free one. Returns the endpoint URL."""
        app = web.Application(client_max_size=self.max_payload_bytes + (1 << 20))
        from burst.faas.lambda_api import add_routes

        add_routes(app, self)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.endpoint = f"http://{self.host}:{self.port}"
        self._reaper = asyncio.create_task(self._reap_idle())
        return self.endpoint

    async def stop(self) -> None:
        """Stop every instance, then the server."""
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
        for state in self._functions.values():
            for inst in state.idle + list(state.busy):
                await self._stop_instance(inst)
            state.idle.clear()
        if self._background:
            await asyncio.wait(set(self._background), timeout=5.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> str:
        """Run the runtime on its own event loop in a daemon thread; returns the endpoint."""
        loop = asyncio.new_event_loop()
        self._thread_loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="function-runtime",
                                        daemon=True)
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=30)

    def stop_thread(self) -> None:
        loop = self._thread_loop
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        loop.close()
        self._thread_loop = self._thread = None


async def _read_frame(reader: asyncio.StreamReader) -> tuple[dict, bytes]:
    meta_len, body_len = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    meta = orjson.loads(await reader.readexactly(meta_len))
    return meta, await reader.readexactly(body_len)
