"""Callback delivery retries (``gateway.asyncq.callback.deliver``) against a loopback server."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from gateway.asyncq.callback import SIGNATURE_HEADER, deliver, verify_signature
from gateway.asyncq.jobs import Job, JobState
from tests.support.loopback import refusing_port


def _job(url: str) -> Job:
    job = Job(
        id="job-1",
        tenant="a",
        model="mlp",
        version=None,
        body=b"{}",
        header_length=None,
        created_s=0.0,
        callback_url=url,
    )
    job.state, job.status, job.result = JobState.DONE, 200, b'{"outputs": []}'
    return job


async def _server(statuses: list[int]):
    """A callback receiver answering ``statuses`` in turn (then 200); returns (url, seen, stop)."""
    seen: list[web.Request] = []

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request)
        return web.Response(status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_post("/cb", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}/cb", seen, runner.cleanup


async def test_a_refused_callback_is_sent_again_until_a_2xx():
    url, seen, stop = await _server([500, 503])
    try:
        async with aiohttp.ClientSession() as session:
            ok = await deliver(
                session,
                _job(url),
                "s3cret",
                1000.0,
                attempts=3,
                timeout_s=5,
                backoff_s=0.01,
                allow_private=True,
            )
    finally:
        await stop()
    assert ok and len(seen) == 3
    assert verify_signature("s3cret", seen[-1].headers[SIGNATURE_HEADER], b'{"outputs": []}', 1000)


async def test_a_callback_gives_up_after_its_attempts():
    url, seen, stop = await _server([500, 500, 500])
    try:
        async with aiohttp.ClientSession() as session:
            ok = await deliver(
                session,
                _job(url),
                "s3cret",
                1000.0,
                attempts=2,
                timeout_s=5,
                backoff_s=0.01,
                allow_private=True,
            )
            with refusing_port() as port:  # nothing listens there
                unreachable = await deliver(
                    session,
                    _job(f"http://127.0.0.1:{port}/cb"),
                    "s3cret",
                    1000.0,
                    attempts=2,
                    timeout_s=5,
                    backoff_s=0.01,
                    allow_private=True,
                )
    finally:
        await stop()
    assert not ok and len(seen) == 2
    assert not unreachable
