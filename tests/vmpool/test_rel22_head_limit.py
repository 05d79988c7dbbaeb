"""The model server bounds a request head (request line and headers) as the gateway does: a
client sending header after header gets 431 and a closed connection, not a replica whose
memory grows with what it sends (httptools keeps no limit of its own)."""

from __future__ import annotations

import json
import select
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from vmpool.export import export_zoo
from vmpool.http_protocol import MAX_HEAD_BYTES

from ..gateway.conftest import running_model_server

CHUNK = b"x-pad: " + b"a" * 8185 + b"\r\n"  # one 8 KiB header line
SEND_AT_MOST = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    repo = tmp_path_factory.mktemp("rel22-repo")
    export_zoo("mlp", repo)
    with running_model_server(repo, tmp_path_factory.mktemp("rel22-log") / "ms.log") as url:
        yield url


def _endless_head(url: str) -> tuple[int, bytes]:
    """Send a head that never ends, 8 KiB at a time, until the server answers or closes (or
    ``SEND_AT_MOST`` went in unanswered): the bytes sent and what came back."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nhost: replica\r\n")
        sent = 0
        while sent < SEND_AT_MOST:
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                break
            try:
                s.sendall(CHUNK)
            except OSError:  # closed by the server: what it said is read below
                break
            sent += len(CHUNK)
        answer = b""
        s.settimeout(10)
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except (TimeoutError, OSError):
            pass
    return sent, answer


def test_an_endless_request_head_gets_431_and_a_closed_connection(replica):
    """Before, the server took all 16 MiB of headers and answered nothing (the 408 for a head
    that does not arrive in time comes after 60 s)."""
    sent, answer = _endless_head(replica)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), (sent, answer[:200])
    assert b"connection: close" in head.lower()
    assert "over 64 KiB" in json.loads(body)["error"]
    # refused soon after the limit (the reads it took, and what the socket buffers held)
    assert sent < MAX_HEAD_BYTES + 8 * 1024 * 1024, sent
    assert httpx.get(f"{replica}/v2/health/ready", timeout=10).status_code == 200


def test_a_large_head_within_the_limit_is_still_served(replica):
    pad = {f"x-pad-{i}": "a" * 1000 for i in range(50)}  # about 50 KiB
    r = httpx.get(f"{replica}/v2/models/mlp", headers=pad, timeout=10)
    assert r.status_code == 200, r.text
