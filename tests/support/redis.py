"""A real redis-server on a free loopback port for tests (Debian's `redis-server` package)."""

from __future__ import annotations

import os
import socket

from ops.local_redis import RedisServer, redis_binary, start_redis

__all__ = ["RedisServer", "redis_binary", "start_redis", "redis_server", "redis_url"]


def _start_own_redis() -> RedisServer:
    """``start_redis``, again on another port when the free port it found was taken before
    redis-server bound it; and the server answering there is this one (its ``dir``), not
    another test process's redis on that port (its FLUSHDB would reach theirs)."""
    for attempt in range(5):
        try:
            server = start_redis()
        except RuntimeError as exc:
            if "Address already in use" in str(exc) and attempt < 4:
                continue
            raise
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"CONFIG GET dir\r\n")
            reply = sock.recv(4096)
        if os.path.realpath(server.base).encode() in reply:
            return server
        server.stop()
    raise RuntimeError("no free port that redis-server could bind")


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
        server = _start_own_redis()
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
