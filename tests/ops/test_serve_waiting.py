"""A gateway whose VM fleet is not ready says what it waits for instead of staying silent."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from gateway.settings import Settings
from ops.commands import serve
from tests.support.loopback import serve_aiohttp


def test_a_fleet_that_is_not_ready_gets_a_listening_line_naming_what_it_waits_for(
    monkeypatch, capsys
):
    noticed = threading.Event()

    async def ready(request):  # not ready until the notice was printed, then ready
        return web.Response(status=200 if noticed.is_set() else 503)

    app = web.Application()
    app.router.add_get("/v2/health/ready", ready)
    url, stop = serve_aiohttp(app)
    port = int(url.rsplit(":", 1)[1])
    monkeypatch.setattr(serve, "NOT_READY_NOTICE_S", 0.3)
    monkeypatch.setattr(serve, "_banner", lambda settings, models: "BANNER")
    real_print = print

    def watching_print(*args, **kwargs):
        real_print(*args, **kwargs)
        if args and str(args[0]).startswith("listening:"):
            noticed.set()

    monkeypatch.setattr("builtins.print", watching_print)
    settings = Settings.load(
        None,
        port=port,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": ["http://10.9.9.9:8000"]},
    )
    try:
        asyncio.run(asyncio.wait_for(serve._announce_ready(object(), settings, ["m"]), 30))
    finally:
        stop()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"listening: http://127.0.0.1:{port} "
        "(not ready yet: no VM replica answers at http://10.9.9.9:8000)"
    ), out
    assert out[1:] == ["BANNER", f"ready: http://127.0.0.1:{port}"], out
