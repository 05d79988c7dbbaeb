"""``tidegate serve`` keeps an idle client connection open longer than clients keep theirs.

The walkthrough's ``tidegate loadgen --speedup 10`` against an overloaded ResNet-18 gateway lost
34-63 of 600 requests as "connection lost", none logged by the gateway: uvicorn closed
connections idle for its default 5 s while aiohttp (15 s) reused them. The server's keep-alive
must outlast aiohttp's and a load balancer's (60 s)."""

from __future__ import annotations

import pytest

from ops.cli import main
from vmpool.export import export_zoo


class _Captured(Exception):
    pass


def test_serve_keeps_idle_connections_past_client_and_lb_keep_alives(tmp_path, monkeypatch):
    import uvicorn

    from gateway import access_log

    seen: dict = {}

    def capture(app, **kwargs):
        seen.update(kwargs)
        raise _Captured

    export_zoo("mlp", tmp_path / "models")
    monkeypatch.setattr(uvicorn, "Config", capture)
    # serve points every later access log of this process at its stdout: undone after the test
    monkeypatch.setattr(access_log, "_STREAM_SINK", access_log._STREAM_SINK)
    with pytest.raises(_Captured):
        main(["serve", "--data-dir", str(tmp_path), "--port", "0", "--grpc-port", "-1"])
    assert seen["timeout_keep_alive"] > 60  # aiohttp's 15 s, a load balancer's 60 s
