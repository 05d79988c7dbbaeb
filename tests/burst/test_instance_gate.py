"""The burst service's gate waits for function instances already started (the live side of
``policies/routing/instance_wait.py``): invocations are stood in by tasks the test finishes,
on a clock the test moves (no wall-clock timing)."""

from __future__ import annotations

import asyncio

from burst.instance_gate import InstanceGate, request_slo_ms


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Invocations:
    """Each request holds the gate until the test finishes it, like a function invocation."""

    def __init__(self, gate: InstanceGate, slo_ms: float | None = 300.0):
        self.gate, self.slo_ms = gate, slo_ms
        self.running: list[asyncio.Future] = []  # in the order they were invoked
        self.tasks: list[asyncio.Task] = []

    def send(self) -> None:
        async def one() -> None:
            done = asyncio.get_running_loop().create_future()
            try:
                async with self.gate.hold(1, self.slo_ms):
                    self.running.append(done)
                    await done
            except RuntimeError:
                pass  # the function failed

        self.tasks.append(asyncio.create_task(one()))

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def finish_oldest(self, fail: bool = False) -> None:
        done = self.running.pop(0)
        done.set_exception(RuntimeError("the function failed")) if fail else done.set_result(None)
        await self.settle()


async def warmed_gate(clock: Clock) -> InstanceGate:
    """A gate that has seen a cold start (~900 ms) and warm runs (100 ms), then a quiet past
    its keep-alive: no instance is left."""
    gate = InstanceGate(1000, max_waiting=1000, clock=clock, cold_start_ms=900.0)
    inv = Invocations(gate)
    for _ in range(30):
        inv.send()
        await inv.settle()
        clock.t += 0.1
        await inv.finish_oldest()
    clock.t += 2 * gate.keep_alive_s
    await asyncio.gather(*inv.tasks)
    return gate


async def onset(gate: InstanceGate, clock: Clock, n: int, every_s: float):
    """``n`` spills ``every_s`` apart, none answered yet: how many were invoked at once."""
    inv = Invocations(gate)
    cold_before = gate.cold_started
    for _ in range(n):
        inv.send()
        await inv.settle()
        clock.t += every_s
    return inv, gate.cold_started - cold_before


async def test_a_burst_onset_starts_instances_for_its_rate_not_one_per_request():
    clock = Clock()
    gate = await warmed_gate(clock)
    inv, started = await onset(gate, clock, 100, 0.01)  # 100 spills in 1 s, 100 ms each
    # the first half cold start and a run (~560 ms) start their own; later ones wait for them
    assert 40 <= started <= 65
    assert len(inv.running) == started
    # the instances come up: every waiting request is served by one of them, none cold
    clock.t += 1.0
    while inv.running:
        await inv.finish_oldest()
    await asyncio.gather(*inv.tasks)
    assert gate.cold_started == 1 + started  # the warm-up's first request and the onset's
    assert gate.waited == 100 - started


async def test_without_an_slo_every_spill_is_sent_at_once_as_before():
    clock = Clock()
    gate = await warmed_gate(clock)
    inv = Invocations(gate, slo_ms=None)
    for _ in range(20):
        inv.send()
        await inv.settle()
        clock.t += 0.05
    assert len(inv.running) == 20 and gate.waited == 0
    while inv.running:
        await inv.finish_oldest()
    await asyncio.gather(*inv.tasks)


async def test_a_wait_that_meets_the_slo_takes_the_instance_about_to_be_free():
    clock = Clock()
    gate = await warmed_gate(clock)
    inv, _ = await onset(gate, clock, 1, 0.0)
    await inv.finish_oldest()  # warm now, and idle
    inv.send()
    await inv.settle()  # busy with a warm request from now
    clock.t += 0.05  # it is due in ~50 ms: 50 + a 100 ms run meets 300 ms
    cold_before = gate.cold_started
    inv.send()
    await inv.settle()
    assert len(inv.running) == 1 and gate.cold_started == cold_before
    await inv.finish_oldest()
    assert len(inv.running) == 1  # the waiting request got the freed instance
    await inv.finish_oldest()
    await asyncio.gather(*inv.tasks)


async def test_a_failed_invocation_sends_its_waiter_to_a_new_instance():
    clock = Clock()
    gate = await warmed_gate(clock)
    inv, started = await onset(gate, clock, 70, 0.01)
    assert 70 - started > 0  # some wait
    cold_before = gate.cold_started
    await inv.finish_oldest(fail=True)  # its instance may be gone
    assert gate.cold_started == cold_before + 1
    assert len(inv.running) == started  # the first waiter was let go to start its own
    clock.t += 1.0
    while inv.running:
        await inv.finish_oldest()
    await asyncio.gather(*inv.tasks)


async def test_the_slo_comes_from_the_request_context():
    clock = Clock()
    gate = await warmed_gate(clock)
    request_slo_ms.set(300.0)
    inv, started = await onset(gate, clock, 100, 0.01)
    inv.slo_ms = None
    assert started < 100  # the context's SLO applied: spills waited
    clock.t += 1.0
    while inv.running:
        await inv.finish_oldest()
    await asyncio.gather(*inv.tasks)
