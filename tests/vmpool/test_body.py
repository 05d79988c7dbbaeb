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


def _chunks(n: int, size: int):
    left = [n]

    async def receive():
        left[0] -= 1
        return {"type": "http.request", "body": b"x" * size, "more_body": left[0] > 0}

    return receive


async def test_a_body_alone_in_flight_is_not_refused_for_its_own_chunks():
    """A body over the in-flight budget but within its own limit, with nothing else in flight,
    is read (it was a 503 'retry shortly' forever: its own earlier chunks counted as others')."""
    from vmpool.body import BodyBudget

    budget = BodyBudget(1 << 20)
    lease = budget.lease()
    body = await read_body(_chunks(8, 256 << 10), str(2 << 20), 4 << 20, lease=lease)
    assert len(body) == 2 << 20 and budget.refused == 0
    lease.release()
    assert budget.in_flight_bytes == 0


async def test_a_second_body_past_the_budget_is_still_refused():
    from vmpool.body import BodyBudget

    budget = BodyBudget(1 << 20)
    first = budget.lease()
    first.take(900 << 10)  # another request holds most of the budget
    with pytest.raises(CodecError) as caught:
        await read_body(_chunks(8, 256 << 10), str(2 << 20), 4 << 20, lease=budget.lease())
    assert caught.value.status == 503 and budget.refused == 1
