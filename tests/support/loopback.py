"""A threaded HTTP server on a free loopback port, the base of the wire-checking fakes."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # a burst of concurrent connects must not overflow the listen backlog
    daemon_threads = True


class LoopbackHTTPServer:
    """Subclasses call ``_listen(handler_class)`` in ``__init__``; ``start()`` serves."""

    def _listen(self, handler_class) -> None:
        self._httpd = _Server(("127.0.0.1", 0), handler_class)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def serve_aiohttp(app):
    """An aiohttp ``web.Application`` on a free loopback port, in a thread with its own event
    loop: returns (base URL, stop)."""
    import asyncio
    import threading

    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    # port 0: the kernel's pick at bind (a port found free earlier may be taken by then)
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def stop():
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where nothing listens, for the with-block: bound and never listening,
    so a connection is refused, and no other process can take the port meanwhile (a port only
    found free could be serving something else by the time the test connects)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
