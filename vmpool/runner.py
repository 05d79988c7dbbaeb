"""Running the model server: uvicorn on uvloop, a graceful drain on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from typing import Callable

from fastapi import FastAPI

from vmpool.dataplane import ModelServer

log = logging.getLogger("tidegate.model_server")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run_model_server(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 8080,  # `tidegate model-server`'s default (ops/commands/model_server.py)
    *,
    drain_timeout_s: float = 30.0,
    on_ready: Callable[[str, int], None] | None = None,
) -> int:
    """Serve ``app`` until SIGTERM/SIGINT, then drain and return 0 (1 if the drain timed out).

    ``on_ready(host, port)`` runs once the socket accepts requests (port 0 picks a free port).
    A second signal skips the drain.
    """
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve(app, host, port, drain_timeout_s, on_ready))


def _uvicorn_server(app: FastAPI, drain_timeout_s: float):
    """A uvicorn server for ``app`` that leaves signal handling to us."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # our own handlers drain first; uvicorn's would re-raise
            yield

    from vmpool.http_protocol import OneSendProtocol

    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=OneSendProtocol,  # httptools, head and body in one send
        proxy_headers=False,  # a replica behind the gateway: no forwarded-for to honour
        access_log=False,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=drain_timeout_s,
    )
    return _Server(config)


async def _serve(
    app: FastAPI,
    host: str,
    port: int,
    drain_timeout_s: float,
    on_ready: Callable[[str, int], None] | None,
) -> int:
    server = _uvicorn_server(app, drain_timeout_s)
    core: ModelServer = app.state.model_server
    try:
        sock = _bind(host, port)
    except OSError:
        await asyncio.to_thread(core.close)
        raise
    drained = True
    drain_task: list[asyncio.Task] = []

    async def drain() -> None:
        nonlocal drained
        core.start_drain()
        drained = await core.wait_idle(drain_timeout_s)
        if not drained:
            log.error(
                "drain timed out after %.1f s with %d requests in flight",
                drain_timeout_s,
                core.in_flight,
            )
        server.should_exit = True

    def on_signal() -> None:
        if drain_task:
            server.force_exit = server.should_exit = True
            return
        drain_task.append(asyncio.ensure_future(drain()))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started and on_ready is not None:
        on_ready(host, sock.getsockname()[1])
    await serving
    return 0 if drained else 1
