"""Admission to the burst path: FIFO over instance slots, bounded waiting, refusal with a hint."""

from __future__ import annotations

import asyncio

import pytest

from burst.gate import Busy, SlotGate


async def test_requests_queue_in_order_and_a_large_one_is_not_starved():
    gate = SlotGate(4, max_waiting=8, max_wait_s=60)
    order: list[str] = []
    release = {name: asyncio.Event() for name in "abcd"}

    async def request(name: str, slots: int):
        async with gate.hold(slots):
            order.append(name)
            await release[name].wait()

    tasks = [asyncio.create_task(request("a", 3))]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(request("b", 3)), asyncio.create_task(request("c", 1))]
    await asyncio.sleep(0)
    assert order == ["a"] and gate.waiting() == 2  # c fits, but waits its turn behind b
    release["a"].set()
    for _ in range(100):  # loop turns, not time: a's exit hands its slots on to b, then c
        if len(order) == 3:
            break
        await asyncio.sleep(0)
    assert order == ["a", "b", "c"] and gate.free() == 0
    release["b"].set()
    release["c"].set()
    await asyncio.gather(*tasks)
    assert gate.free() == 4 and gate.waiting() == 0


async def test_a_full_queue_refuses_at_once_and_a_long_wait_gives_up():
    gate = SlotGate(2, max_waiting=1, max_wait_s=0.05)
    hold = asyncio.Event()

    async def busy():
        async with gate.hold(2):
            await hold.wait()

    task = asyncio.create_task(busy())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(gate.hold(1).__aenter__())
    await asyncio.sleep(0)
    with pytest.raises(Busy) as refused:  # the one waiting place is taken
        async with gate.hold(1):
            pass
    assert refused.value.retry_after_s >= 1
    with pytest.raises(Busy, match="within"):  # the waiter's own bound runs out
        await waiter
    hold.set()
    await task
    assert gate.free() == 2 and gate.waiting() == 0
