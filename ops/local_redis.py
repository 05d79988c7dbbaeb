"""A throwaway redis-server on a free loopback port (Debian's ``redis-server`` package): for the
shared rate-limit benchmark and the tests of the Redis-backed limiter and async queue.

Nothing is persisted (no RDB, no AOF); its files live in a temporary directory removed on stop.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vmpool.procs import free_port, spawn_sync


def redis_binary() -> str | None:
    return shutil.which("redis-server")


@dataclass
class RedisServer:
    port: int
    base: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(timeout_s: float = 30.0) -> RedisServer:
    """A running server that answers PING; FileNotFoundError when redis-server is not installed,
    RuntimeError (with its log's tail) when it exits or does not answer in ``timeout_s``."""
    binary = redis_binary()
    if binary is None:
        raise FileNotFoundError("redis-server is not installed")
    base = Path(tempfile.mkdtemp(prefix="tidegate-redis-"))
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = spawn_sync([binary, *args, "--dir", str(base)], log_path=base / "redis.log")
    server = RedisServer(port, base, proc)
    deadline = time.monotonic() + timeout_s
    while not _answers_ping(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            log_tail = (base / "redis.log").read_text(errors="replace")[-2000:]
            server.stop()
            raise RuntimeError(f"redis-server did not start (exit {proc.returncode}): {log_tail}")
        time.sleep(0.05)
    return server
