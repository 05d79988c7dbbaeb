"""A real redis-server on a free loopback port for tests (Debian's `redis-server` package)."""

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


def start_redis() -> RedisServer:
    binary = redis_binary()
    if binary is None:
        raise FileNotFoundError("redis-server is not installed")
    base = Path(tempfile.mkdtemp(prefix="tidegate-redis-"))
    port = free_port()
    proc = spawn_sync(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(base),
        ],
        log_path=base / "redis.log",
    )
    server = RedisServer(port, base, proc)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"redis-server exited with {proc.returncode}: "
                f"{(base / 'redis.log').read_text(errors='replace')[-2000:]}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return server
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _fixtures():
    import pytest

    @pytest.fixture(scope="session")
    def redis_server():
        """One redis-server for the session; skipped only when it is not installed."""
        if redis_binary() is None:
            pytest.skip(
                "redis-server is not installed (Debian: apt-get install redis-server; "
                "`make test` does it)"
            )
        server = start_redis()
        try:
            yield server
        finally:
            server.stop()

    @pytest.fixture
    def redis_url(redis_server) -> str:
        """The server's URL, flushed: each test starts with no counters."""
        with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as sock:
            sock.sendall(b"FLUSHDB\r\n")
            assert sock.recv(64).startswith(b"+OK")
        return redis_server.url

    return redis_server, redis_url


redis_server, redis_url = _fixtures()
