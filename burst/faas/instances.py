"""Function instance processes: spawn one (a cold start), wait for its frames under the memory
watchdog and the timeout, stop it. One invocation at a time per instance."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import orjson

from burst.faas.instance import encode_frame
from burst.faas.watchdog import peak_mb, watch_memory
from vmpool.procs import die_with_parent

_HEADER = struct.Struct(">II")
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class Outcome(Enum):
    OK = "ok"
    TIMEOUT = "timeout"
    OOM = "oom"
    CRASH = "crash"


# Lambda's errorType for an instance that failed to initialise
FAILED_INIT = {
    Outcome.OOM: "Runtime.OutOfMemory",
    Outcome.TIMEOUT: "Sandbox.Timedout",
    Outcome.CRASH: "Runtime.ExitError",
}


@dataclass
class Frame:
    outcome: Outcome
    meta: dict = field(default_factory=dict)
    body: bytes = b""
    peak_mb: int = 0


class Instance:
    """One live instance process and the socket the runtime talks to it over."""

    def __init__(
        self,
        proc: subprocess.Popen,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        memory_mb: int,
    ):
        self.proc = proc
        self.reader = reader
        self.writer = writer
        self.memory_mb = memory_mb  # what it reserves of the runtime's memory budget
        self.init_ms = 0.0
        self.init_logs = ""
        self.last_used = time.monotonic()
        self.stopped = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send_invoke(self, request_id: str, timeout_s: float, payload: bytes) -> None:
        self.writer.write(
            encode_frame(
                {"type": "invoke", "request_id": request_id, "timeout_ms": int(timeout_s * 1000)},
                payload,
            )
        )


# What an instance takes from the runtime's own environment: what the interpreter and its
# libraries need (a Lambda gets its runtime's few variables, not its deployer's). The rest (the
# gateway's TIDEGATE_* settings with a ledger URL or admin key, a Redis URL, cloud credentials)
# reached every instance before; now it sees its function's configured environment and these.
_INHERITED = {
    "PATH", "HOME", "USER", "LANG", "LANGUAGE", "TZ", "TMPDIR", "VIRTUAL_ENV", "LD_LIBRARY_PATH",
    "PYTHONPATH", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED",
    # how this machine reaches a store over HTTPS (its proxy, its CA certificates)
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE",
}  # fmt: skip
_INHERITED_PREFIXES = ("LC_", "COV_CORE_")  # (locale; coverage of subprocesses in tests)
# an S3 store configured without keys reaches its bucket with the runtime's AWS credentials
# (as a deployed function with its role's): those pass, for such a store only
_AWS_CHAIN = ("AWS_",)


def inherited_env(environment: dict[str, str]) -> dict[str, str]:
    """The runtime's variables an instance of a function with ``environment`` gets."""
    prefixes = _INHERITED_PREFIXES + (_AWS_CHAIN if _store_uses_aws_chain(environment) else ())
    return {k: v for k, v in os.environ.items() if k in _INHERITED or k.startswith(prefixes)}


def _store_uses_aws_chain(environment: dict[str, str]) -> bool:
    try:
        store = orjson.loads(environment.get("TIDEGATE_BURST_STORE") or "{}")
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(store, dict)
        and store.get("kind") in ("s3", "sqs")
        and not store.get("aws_access_key_id")
    )


def instance_env(
    name: str, handler: str, memory_mb: int, environment: dict[str, str], fd: int
) -> dict[str, str]:
    env = inherited_env(environment)
    env.update(environment)
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "TIDEGATE_FUNCTION_MEMORY_MB": str(memory_mb),
            # one thread per instance, as a 1,769 MB Lambda has one vCPU
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "TIDEGATE_FUNCTION_THREADS": "1",
            "_HANDLER": handler,
            "TIDEGATE_INSTANCE_FD": str(fd),
            # the project root first, so handlers in this checkout import from any cwd
            "PYTHONPATH": os.pathsep.join(
                p for p in (_PROJECT_ROOT, env.get("PYTHONPATH", "")) if p
            ),
        }
    )
    return env


def _autogroup_nice() -> int | None:
    """This process's scheduling-group weight (Linux autogroup), if the kernel has them."""
    try:
        with open("/proc/self/autogroup") as f:
            parts = f.read().split()  # "/autogroup-123 nice 0"
        return int(parts[-1]) if len(parts) == 3 and parts[1] == "nice" else None
    except (OSError, ValueError):
        return None


def _own_cpu_share(die_with_parent_fn, nice: int | None):
    """A ``preexec_fn``: the instance runs in its own session, so with Linux autogroup it has its
    own scheduling group at the runtime's weight, as a Lambda instance is its own microVM. In
    the runtime's group, all instances together got one group's share of the cores: two legs
    computing at once each ran ~1.5-2x slower than one alone on a machine with other sessions
    busy, and a split plan lost to one function."""

    def preexec() -> None:
        die_with_parent_fn()
        if nice is not None:
            try:  # a new session starts a new autogroup at nice 0
                with open("/proc/self/autogroup", "w") as f:
                    f.write(str(nice))
            except OSError:
                pass

    return preexec


async def spawn(name: str, handler: str, memory_mb: int, environment: dict[str, str]) -> Instance:
    """Start the process; it imports the handler and sends a ready (or init_error) frame."""
    parent_sock, child_sock = socket.socketpair()
    try:
        env = instance_env(name, handler, memory_mb, environment, child_sock.fileno())
        proc = subprocess.Popen(
            # the trailing words are for people (``pgrep -af tidegate``): the module ignores them
            [sys.executable, "-m", "burst.faas.instance", "tidegate-function", name],
            env=env,
            pass_fds=(child_sock.fileno(),),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own CPU share (see _own_cpu_share)
            preexec_fn=_own_cpu_share(die_with_parent(), _autogroup_nice()),
        )  # no orphans if the runtime dies
    except BaseException:
        parent_sock.close()
        raise
    finally:
        child_sock.close()
    reader, writer = await asyncio.open_unix_connection(sock=parent_sock, limit=1 << 20)
    return Instance(proc, reader, writer, memory_mb)


async def next_frame(inst: Instance, timeout_s: float, memory_mb: int, poll_s: float) -> Frame:
    """The instance's next frame, or why there is none (over its memory, timed out, died)."""
    read = asyncio.ensure_future(_read_frame(inst.reader))
    watch = asyncio.ensure_future(watch_memory(inst.pid, memory_mb, poll_s))
    try:
        done, _ = await asyncio.wait(
            {read, watch}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        watch.cancel()
        if not read.done():
            read.cancel()
    if watch in done and not watch.cancelled():
        return Frame(Outcome.OOM, peak_mb=watch.result())
    if read in done:
        if read.cancelled() or read.exception() is not None:
            return Frame(Outcome.CRASH, peak_mb=peak_mb(inst.pid))
        meta, body = read.result()
        return Frame(Outcome.OK, meta, body)
    return Frame(Outcome.TIMEOUT, peak_mb=peak_mb(inst.pid))


async def exit_code(inst: Instance, wait_s: float = 2.0) -> int | None:
    """The exit status of an instance whose socket closed (give it a moment to exit)."""
    try:
        return await asyncio.to_thread(inst.proc.wait, wait_s)
    except subprocess.TimeoutExpired:
        return None


def stop(inst: Instance, background: set) -> None:
    """Close its socket (a healthy instance exits on EOF), kill it, and reap it off the loop."""
    try:
        inst.writer.close()
    except Exception:  # noqa: BLE001 - already closed or broken: the kill below still runs
        pass
    if inst.proc.poll() is None:
        inst.proc.kill()
    task = asyncio.get_running_loop().run_in_executor(None, inst.proc.wait)
    background.add(task)
    task.add_done_callback(background.discard)


async def _read_frame(reader: asyncio.StreamReader) -> tuple[dict, bytes]:
    meta_len, body_len = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    meta = orjson.loads(await reader.readexactly(meta_len))
    return meta, await reader.readexactly(body_len)


def failure(
    frame: Frame, timeout_s: float, memory_mb: int, request_id: str, code: int | None
) -> tuple[str, str]:
    """Lambda's (errorType, message) for an invocation that ended without a result frame."""
    if frame.outcome is Outcome.TIMEOUT:
        return "Sandbox.Timedout", (
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
            f"{request_id} Task timed out after {timeout_s:.2f} seconds"
        )
    if frame.outcome is Outcome.OOM:
        return "Runtime.OutOfMemory", (
            f"RequestId: {request_id} Error: Runtime exited with error: signal: killed "
            f"(memory used {frame.peak_mb} MB exceeded the function's memory size "
            f"{memory_mb} MB)"
        )
    return "Runtime.ExitError", (
        f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}"
    )
