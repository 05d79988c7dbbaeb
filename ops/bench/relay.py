"""A bare TCP relay on uvloop: the floor of what any proxy in front of a model server costs.

It forwards bytes both ways between each client connection and its own connection to the
upstream, and does nothing else (no HTTP parsing, no copies beyond the kernel's). Put in front of
a model server in ``gateway_overhead.py``, it measures what one more process on the request path
costs on this machine (two more loopback hops, two more process wake-ups) before the gateway does
any work: the gateway's added latency and throughput share are read against it.

    python ops/bench/relay.py --upstream 127.0.0.1:8000 --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from vmpool.procs import free_port  # noqa: E402


class _Upstream(asyncio.Protocol):
    """The relay's connection to the upstream: what it reads goes to the client."""

    def __init__(self, client: asyncio.Transport):
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.client.close()


class _Client(asyncio.Protocol):
    """One client connection: bytes read before the upstream connection is up wait in a list."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.upstream: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        try:
            upstream, _ = await asyncio.get_running_loop().create_connection(
                lambda: _Upstream(self.transport), self.host, self.port
            )
        except OSError:
            self.transport.close()
            return
        self.upstream = upstream
        for data in self.pending:
            upstream.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def serve(upstream: str, port: int) -> None:
    host, _, up_port = upstream.rpartition(":")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Client(host or "127.0.0.1", int(up_port)), "127.0.0.1", port
    )
    async with server:
        await server.serve_forever()


def start_relay(upstream_port: int, log: Path) -> tuple[subprocess.Popen, int]:
    """This relay in its own process, in front of ``127.0.0.1:upstream_port``: (process, port)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--upstream", f"127.0.0.1:{upstream_port}"]
        + ["--port", str(port)],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--port", type=int, required=True, help="port to listen on (127.0.0.1)")
    args = ap.parse_args()
    import uvloop

    try:
        uvloop.run(serve(args.upstream, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
