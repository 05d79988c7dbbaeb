"""A TCP proxy on loopback in front of a real PostgreSQL that, once armed, forwards the next
``COMMIT`` and then drops the connection before the server's answer reaches the client: the
transaction is committed, and the client cannot know it (what a network cut, a proxy or a
failover between COMMIT and its acknowledgement does)."""

from __future__ import annotations

import socket
import threading

# psycopg commits with a simple query: 'Q', its length, the text and a NUL
_COMMIT = b"COMMIT\x00"


class CommitDropProxy:
    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.dropped = threading.Event()  # a COMMIT went through and its answer was dropped
        self.commits_seen = 0
        self._armed = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, upstream_url: str) -> str:
        return upstream_url.replace(f":{self.upstream[1]}/", f":{self.port}/")

    def arm(self) -> None:
        """Drop the connection that sends the next COMMIT, once the server has answered it."""
        with self._lock:
            self._armed = True

    def close(self) -> None:
        """Cut the database off: connections end, and new ones are refused."""
        _close(self.listener)  # (shutdown first: a close alone leaves a blocked accept() open)
        with self._lock:
            for sock in self._sockets:
                _close(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, server]
            state = {"drop": False}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, state), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        while data := _recv(client):
            if _COMMIT in data:
                with self._lock:
                    self.commits_seen += 1
                    if self._armed:
                        self._armed = False
                        state["drop"] = True  # (before the server can answer it)
            try:
                server.sendall(data)
            except OSError:
                break
        _close(server)

    def _down(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        while data := _recv(server):
            if state["drop"]:  # the COMMIT's answer: the server has committed; the client
                _close(client)  # sees the connection end instead
                _close(server)
                self.dropped.set()
                return
            try:
                client.sendall(data)
            except OSError:
                break
        _close(client)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
