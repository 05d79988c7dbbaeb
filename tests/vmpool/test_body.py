"""The bounded body reader's timeout: a silent client gets 408, a cancelled request stays
cancelled."""

from __future__ import annotations

import asyncio

import pytest

from vmpool.body import read_body
from vmpool.wire import CodecError


async def _silent():
    await asyncio.Event().wait()  # a client that declared a body and never sent it


async def test_a_body_that_does_not_come_is_a_408():
    with pytest.raises(CodecError) as caught:
        await read_body(_silent, b"10", 1 << 20, timeout_s=0.05)
    assert caught.value.status == 408 and caught.value.headers == {"connection": "close"}


async def test_a_cancelled_read_stays_cancelled():
    task = asyncio.create_task(read_body(_silent, b"10", 1 << 20, timeout_s=30.0))
    await asyncio.sleep(0)  # the read is waiting for the body
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_body_that_is_there_is_read():
    async def receive():
        return {"type": "http.request", "body": b"0123456789", "more_body": False}

    assert await read_body(receive, b"10", 1 << 20, timeout_s=30.0) == b"0123456789"
