"""A burst request whose caller gives up keeps its function slots until its invocation ends."""

from __future__ import annotations

import asyncio

import pytest

from burst.detach import Detached
from burst.gate import Busy, SlotGate


async def _until(predicate) -> None:
    for _ in range(100):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_a_caller_that_times_out_leaves_the_slots_held_until_the_invocation_ends():
    gate, detached = SlotGate(1, max_waiting=0), Detached()
    release, ran = asyncio.Event(), []

    async def invocation():
        await release.wait()  # the platform still runs it
        ran.append("done")
        return "answer"

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(detached.run(gate.hold(1), invocation), 0.05)
    assert gate.free() == 0 and detached.running == 1
    with pytest.raises(Busy):  # a new request is refused, not sent to a full platform
        await detached.run(gate.hold(1), invocation)
    release.set()
    await _until(lambda: detached.running == 0)
    assert ran == ["done"] and gate.free() == 1
    assert await detached.run(gate.hold(1), invocation) == "answer"


async def test_a_caller_that_leaves_while_queued_runs_nothing():
    gate, detached = SlotGate(1, max_waiting=4), Detached()
    release, ran = asyncio.Event(), []

    async def invocation(name):
        ran.append(name)
        await release.wait()

    first = asyncio.ensure_future(detached.run(gate.hold(1), lambda: invocation("first")))
    await _until(lambda: ran == ["first"])
    queued = asyncio.ensure_future(detached.run(gate.hold(1), lambda: invocation("queued")))
    await _until(lambda: gate.waiting() == 1)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    release.set()
    await first
    await asyncio.sleep(0)
    assert ran == ["first"] and gate.free() == 1 and gate.waiting() == 0


async def test_close_ends_what_still_runs():
    gate, detached = SlotGate(1), Detached()

    async def forever():
        await asyncio.Event().wait()

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(detached.run(gate.hold(1), forever), 0.01)
    await detached.close()
    assert detached.running == 0 and gate.free() == 1
