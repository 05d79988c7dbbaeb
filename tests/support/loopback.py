"""A threaded HTTP server on a free loopback port, the base of the wire-checking fakes."""

from __future__ import annotations

import threading
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
