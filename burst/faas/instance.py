"""One function instance: a child process that imports a handler and serves invocations.

Started by ``LocalFunctionRuntime`` as ``python -m burst.faas.instance``. It talks to the runtime
over a dedicated socket (fd in ``TIDEGATE_INSTANCE_FD``) with length-prefixed frames, so nothing
a handler prints can corrupt the protocol; Python-level prints are captured into the log tail.

Frame: 8-byte header (uint32 meta length, uint32 body length, big-endian), JSON meta, raw body.
Keep this module's imports light: they are part of every cold start.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import os
import socket
import struct
import sys
import time
import traceback

import orjson

_HEADER = struct.Struct(">II")


def encode_frame(meta: dict, body: bytes = b"") -> bytes:
    meta_bytes = orjson.dumps(meta)
    return _HEADER.pack(len(meta_bytes), len(body)) + meta_bytes + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("runtime closed the instance socket")
        buf += chunk
    return bytes(buf)


def _recv_frame(sock: socket.socket) -> tuple[dict, bytes]:
    meta_len, body_len = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    meta = orjson.loads(_recv_exact(sock, meta_len))
    return meta, _recv_exact(sock, body_len)


class LambdaContext:
    """The subset of Lambda's Python context object that handlers use."""

    def __init__(self, request_id: str, timeout_ms: int):
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:local:000000000000:function:{self.function_name}"
        )
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0"))
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _error_body(exc: BaseException, error_type: str | None = None) -> dict:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def load_handler(spec: str):
    """Import ``module:function`` (or Lambda's ``module.function``) and return the callable."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"handler {spec!r} is not of the form module:function")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"Handler '{attr}' missing on module '{module_name}'") from None


def serve(sock: socket.socket, handler_spec: str) -> None:
    """Import the handler, report ready, then run one invocation per request until EOF."""
    logs = io.StringIO()
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(logs), contextlib.redirect_stderr(logs):
            handler = load_handler(handler_spec)
    except Exception as exc:  # the import is user code: report it, never crash silently
        body = _error_body(exc, "Runtime.ImportModuleError")
        body["errorMessage"] = f"Unable to import module '{handler_spec}': {exc}"
        sock.sendall(
            encode_frame({"type": "init_error", "logs": logs.getvalue()}, orjson.dumps(body))
        )
        return
    init_logs = logs.getvalue()
    # what the import made lives as long as the instance: out of the cycle collector's reach, a
    # full collection during an invocation no longer walks torch's ~340 k objects (~80-250 ms)
    gc.freeze()
    sock.sendall(
        encode_frame({"type": "ready", "import_ms": (time.perf_counter() - started) * 1000.0})
    )
    while True:
        try:
            meta, event_bytes = _recv_frame(sock)
        except EOFError:
            return
        logs = io.StringIO()
        logs.write(init_logs)
        init_logs = ""
        context = LambdaContext(meta["request_id"], meta["timeout_ms"])
        ok = True
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(logs), contextlib.redirect_stderr(logs):
            try:
                event = orjson.loads(event_bytes) if event_bytes else {}
                result = handler(event, context)
                body = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
            except orjson.JSONEncodeError as exc:
                ok, body_dict = False, _error_body(exc, "Runtime.MarshalError")
            except Exception as exc:
                ok, body_dict = False, _error_body(exc)
                traceback.print_exc(file=logs)
        duration_ms = (time.perf_counter() - t0) * 1000.0
        if not ok:
            body_dict["requestId"] = meta["request_id"]
            body = orjson.dumps(body_dict)
        sys.stdout.flush()
        sock.sendall(
            encode_frame(
                {"type": "result", "ok": ok, "duration_ms": duration_ms, "logs": logs.getvalue()},
                body,
            )
        )
        _trim_heap()  # after the answer went: off the latency


def _trim_heap(share: float = 0.75) -> None:
    """glibc's malloc_trim once the instance holds over ``share`` of its memory size: what
    requests freed stays for the next one below that (trimming MobileNetV2 b8 every time cost
    137 -> 208 ms in page faults, pred22), and goes back near the cap. Not glibc: nothing."""
    import ctypes

    with open("/proc/self/statm") as f:
        rss_mb = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    if rss_mb > share * int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 1 << 30):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):
            pass


def main() -> None:
    from vmpool.proc_name import name_process

    name_process("tidegate-fn")
    fd = int(os.environ["TIDEGATE_INSTANCE_FD"])
    sock = socket.socket(fileno=fd)
    try:
        serve(sock, os.environ["_HANDLER"])
    finally:
        sock.close()


if __name__ == "__main__":
    main()
