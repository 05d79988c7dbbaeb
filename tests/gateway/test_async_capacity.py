"""The async consumers' share of the VMs: interactive requests have them first."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from gateway.asyncq.capacity import INTERACTIVE_MEMORY_S, VmShare, interactive_room, with_rows
from gateway.asyncq.config import AsyncQueueSettings
from policies.state import LiveState, ModelStats, VmState

# the delay model of ops/bench/async_step.py: a batch of n rows takes 1000 + 100 n ms
CURVE = ((1, 1100.0), (8, 1800.0))
STATS = ModelStats(vm_service_ms_by_batch=CURVE)


class FakePool:
    def __init__(self, replicas: int):
        self.per_replica = [0] * replicas

    def ready(self):
        return list(range(len(self.per_replica)))

    @property
    def outstanding(self) -> int:
        return sum(self.per_replica)

    def add(self) -> None:
        self.per_replica[self.per_replica.index(min(self.per_replica))] += 1


def gateway_for(pool: FakePool, slo_ms: float) -> SimpleNamespace:
    def live_state() -> LiveState:
        vm = VmState(
            len(pool.per_replica),
            0,
            pool.outstanding,
            outstanding_per_replica=tuple(pool.per_replica),
        )
        return LiveState(now_s=0.0, vm=vm, burst_enabled=True, models={"delay": STATS})

    models = {"delay": SimpleNamespace(slo_ms=slo_ms), "other": SimpleNamespace(slo_ms=None)}
    dispatcher = SimpleNamespace(models=models, live_state=live_state)
    return SimpleNamespace(pool=pool, dispatcher=dispatcher, settings=SimpleNamespace(tenants=[]))


def test_room_keeps_the_gateways_own_time_back_as_routing_does():
    """A 5 ms SLO: routing lets a path take min(0.9 x 5, 5 - 1.5) = 3.5 ms (dc0c4fc); the
    async share judged 4.5 ms, so it queued rows ahead of requests routing then saw miss."""
    fast = ModelStats(vm_service_ms_by_batch=((1, 2.0), (8, 4.0)))
    idle = LiveState(0.0, VmState(1, 0, 0, outstanding_per_replica=(0,)), True, models={"m": fast})
    # one row ahead: a request predicted at 4.4 ms (p99), inside 4.5 but not 3.5
    assert interactive_room(idle, {"m": 5.0}, 16) == 0
    assert interactive_room(idle, {"m": 50.0}, 16) > 0


def test_rows_go_to_the_least_loaded_replica():
    vm = with_rows(VmState(2, 0, 3, outstanding_per_replica=(3, 0)), 2)
    assert vm.outstanding == 5 and vm.outstanding_per_replica == (2, 3)


def test_room_shrinks_as_interactive_rows_fill_the_replica():
    idle = LiveState(0.0, VmState(1, 0, 0, outstanding_per_replica=(0,)), True, models={"d": STATS})
    busy = LiveState(0.0, VmState(1, 0, 9, outstanding_per_replica=(9,)), True, models={"d": STATS})
    # 7.2 s SLO: an idle replica leaves room for a full batch ahead of an interactive request
    assert interactive_room(idle, {"d": 7200.0}, 16) >= 8
    # nine interactive rows already wait: fewer async rows fit before the next one misses
    assert interactive_room(busy, {"d": 7200.0}, 16) < interactive_room(idle, {"d": 7200.0}, 16)
    # a tight SLO leaves no room at all
    assert interactive_room(idle, {"d": 1500.0}, 16) == 0
    # an SLO no replica meets even idle is not held against async work
    assert interactive_room(idle, {"d": 500.0}, 16) == 16


async def _consumers_race(share: VmShare, pool: FakePool, consumers: int) -> int:
    """Consumers polling together, each taking a job through an awaited claim."""
    taken = 0

    async def consumer() -> None:
        nonlocal taken
        if not share.may_take():
            return
        claim = share.take()
        await asyncio.sleep(0)  # the claim's await: the others run now
        claim.dispatched()
        pool.add()  # in the pool's count from here
        taken += 1

    await asyncio.gather(*(consumer() for _ in range(consumers)))
    return taken


def test_racing_consumers_fill_only_the_slots():
    pool = FakePool(replicas=1)
    share = VmShare(gateway_for(pool, slo_ms=7200.0), AsyncQueueSettings(slots_per_replica=4))
    assert asyncio.run(_consumers_race(share, pool, consumers=16)) == 4
    assert pool.outstanding == 4 and share.claiming == 0 and share.in_pool == 4


def test_interactive_rows_leave_async_fewer_slots():
    pool = FakePool(replicas=1)
    pool.per_replica[0] = 3  # interactive requests in flight
    share = VmShare(gateway_for(pool, slo_ms=7200.0), AsyncQueueSettings(slots_per_replica=4))
    assert asyncio.run(_consumers_race(share, pool, consumers=16)) == 1


def test_async_waits_while_an_interactive_request_would_miss():
    pool, now_s = FakePool(replicas=1), [100.0]
    pool.per_replica[0] = 1  # an interactive request in flight
    # a 2.5 s SLO: one more row ahead of the next one (1.1 s running + 1.2 s) would miss it
    share = VmShare(
        gateway_for(pool, slo_ms=2500.0),
        AsyncQueueSettings(slots_per_replica=4),
        clock=lambda: now_s[0],
    )
    assert asyncio.run(_consumers_race(share, pool, consumers=16)) == 0
    # it left: the next interactive request is still protected a while
    pool.per_replica[0] = 0
    now_s[0] += 1.0
    assert asyncio.run(_consumers_race(share, pool, consumers=16)) == 0
    # no interactive traffic lately: async work fills the slots
    now_s[0] += INTERACTIVE_MEMORY_S + 1.0
    assert asyncio.run(_consumers_race(share, pool, consumers=16)) == 4


def test_a_claim_counts_each_step_once():
    share = VmShare(gateway_for(FakePool(1), 7200.0), AsyncQueueSettings())
    first, second = share.take(), share.take()
    first.dispatched()
    first.dispatched()
    assert (share.claiming, share.in_pool) == (1, 1)
    first.done()
    second.done()  # failed before the pool: straight to done
    second.done()
    assert (share.claiming, share.in_pool) == (0, 0)
