"""A real redis-server on a free loopback port for tests (Debian's `redis-server` package)."""

from __future__ import annotations

import socket

from ops.local_redis import RedisServer, redis_binary, start_redis

__all__ = ["RedisServer", "redis_binary", "start_redis", "redis_server", "redis_url"]


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
