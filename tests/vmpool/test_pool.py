"""The replica pool over real model-server processes started by the local provisioner."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from policies.state import ManualClock
from tests.vmpool.fake_fleet import FakeClient, FakeProvisioner
from vmpool.breaker import Breakers
from vmpool.client import ReplicaError
from vmpool.pool import NoReplicaError, PoolError, ReplicaPool
from vmpool.provisioners.base import ReplicaState
from vmpool.provisioners.local import LocalProvisioner
from vmpool.provisioners.static import StaticProvisioner


async def _wait(predicate, timeout_s: float) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.slow
async def test_local_provisioner_boots_with_delay_scales_and_serves(model_repo, tmp_path):
    prov = LocalProvisioner(model_repo, boot_delay_s=1.0, log_dir=tmp_path)
    pool = ReplicaPool(prov, health_interval_s=0.5, seed=1)
    try:
        await pool.start(2)
        assert len(pool.booting()) == 2 and pool.ready() == []
        with pytest.raises(NoReplicaError, match="became ready"):  # waits, bounded by its timeout
            await pool.infer("mlp", {"x": np.zeros((1, 4), np.float32)}, timeout_s=0.3)
        waited = await _wait(lambda: len(pool.ready()) == 2, 120)
        assert waited >= 1.0  # the boot delay is honoured, like a VM that takes time to boot
        answers = await asyncio.gather(
            *(pool.infer("mlp", {"x": np.ones((1, 4), np.float32)}) for _ in range(20))
        )
        assert {a.replica_id for a in answers} == {r.id for r in pool.ready()}
        assert all(a.outputs["y"].shape == (1, 3) for a in answers)
        assert pool.outstanding == 0

        await pool.scale_to(1)
        await _wait(lambda: len(prov.replicas()) == 1, 60)
        assert prov.replicas()[0].state == ReplicaState.READY
        answer = await pool.infer("mlp", {"x": np.ones((2, 4), np.float32)})
        assert answer.outputs["y"].shape == (2, 3)
    finally:
        await pool.close()
    assert prov.replicas() == []


@pytest.mark.slow
async def test_a_killed_replica_is_replaced(model_repo, tmp_path):
    prov = LocalProvisioner(model_repo, log_dir=tmp_path)
    pool = ReplicaPool(prov, health_interval_s=0.3)
    try:
        await pool.start(1)
        await _wait(lambda: len(pool.ready()) == 1, 120)
        victim = prov.replicas()[0].id
        next(iter(prov._replicas.values())).process.kill()
        await _wait(
            lambda: any(r.id != victim and r.state == ReplicaState.READY for r in prov.replicas()),
            120,
        )
        answer = await pool.infer("mlp", {"x": np.ones((1, 4), np.float32)})
        assert answer.replica_id != victim
    finally:
        await pool.close()


async def test_power_of_two_choices_prefers_the_less_loaded_replica():
    pool = ReplicaPool(StaticProvisioner(["http://127.0.0.1:1", "http://127.0.0.1:2"]), seed=0)
    pool._outstanding = {"static-1": 5, "static-2": 0}
    assert {pool._choose(set()).id for _ in range(20)} == {"static-2"}
    assert pool._choose({"static-2"}).id == "static-1"


# ---- in-memory fleet: retry, breaker, drain, boot wait, backoff, health loop guard ----------

X = {"x": np.ones((1, 4), np.float32)}


def _fake_pool(clock=None, **kw):
    clock = clock or ManualClock()
    prov, client = FakeProvisioner(clock, fail_boots=kw.pop("fail_boots", False)), FakeClient()
    prov.client = client
    return ReplicaPool(prov, client, clock=clock.now, seed=0, **kw), prov, client


async def test_a_request_whose_replica_dies_under_it_is_sent_once_elsewhere():
    pool, prov, client = _fake_pool()
    await pool.scale_to(2)
    prov.boot_all()
    client.dead.add("http://fake-1")
    answers = [await pool.infer("m", X) for _ in range(6)]
    assert all(a.replica_id == "fake-2" for a in answers)
    assert any(a.attempts == 2 for a in answers)
    # with every replica dying, the request fails after one resend, not a storm
    client.dead.add("http://fake-2")
    calls = len(client.calls)
    with pytest.raises(ReplicaError, match="disconnected"):
        await pool.infer("m", X)
    assert len(client.calls) - calls == 2


async def test_a_replica_failing_in_a_row_gets_no_traffic_until_its_circuit_half_opens():
    clock = ManualClock()
    pool, prov, client = _fake_pool(
        clock, breakers=Breakers(failure_threshold=3, open_s=5.0, clock=clock.now)
    )
    await pool.scale_to(2)
    prov.boot_all()
    client.dead.add("http://fake-1")
    for _ in range(12):
        await pool.infer("m", X)
    assert pool.breakers.is_open("fake-1")
    assert [r.id for r in pool.ready()] == ["fake-2"]
    client.dead.clear()
    clock.advance(5.0)  # half-open: one trial; it succeeds and closes the circuit
    assert {r.id for r in pool.ready()} == {"fake-1", "fake-2"}
    for _ in range(10):
        await pool.infer("m", X)
    assert not pool.breakers.is_open("fake-1")


async def test_timeouts_of_an_overloaded_replica_do_not_open_its_circuit():
    pool, prov, client = _fake_pool()
    await pool.scale_to(1)
    prov.boot_all()
    client.slow.add("http://fake-1")
    for _ in range(5):
        with pytest.raises(ReplicaError, match="in time"):
            await pool.infer("m", X)
    assert [r.id for r in pool.ready()] == ["fake-1"]  # still takes traffic


async def test_scale_in_drains_a_replica_before_stopping_it_and_loses_nothing():
    pool, prov, client = _fake_pool()
    await pool.scale_to(2)
    prov.boot_all()
    client.gate.clear()  # requests stay in flight
    requests = [asyncio.ensure_future(pool.infer("m", X)) for _ in range(10)]
    while sum(client.in_flight.values()) < 10:
        await asyncio.sleep(0)
    await pool.scale_to(1)
    victim = pool.draining()[0]
    assert victim not in {r.id for r in pool.ready()}  # no new work for it
    for _ in range(50):
        await asyncio.sleep(0)
    assert prov.drained == []  # still serving its requests
    client.gate.set()
    answers = await asyncio.gather(*requests)
    assert len(answers) == 10 and all(a.outputs["x"].shape == (1, 4) for a in answers)
    while not prov.drained:
        await asyncio.sleep(0)
    assert prov.drained == [(victim, 0)]  # stopped only once it had nothing in flight
    assert [r.id for r in prov.replicas()] != [victim] and len(prov.replicas()) == 1


async def test_requests_during_a_boot_wait_for_the_first_ready_replica():
    clock = ManualClock()
    pool, prov, client = _fake_pool(clock)
    await pool.scale_to(1)

    async def sleep(seconds):
        clock.advance(seconds)
        if clock.now() >= 3.0:
            prov.boot_all()  # the replica is ready 3 s into the wait
        await asyncio.sleep(0)

    pool._sleep = sleep
    answer = await pool.infer("m", X, timeout_s=10.0)
    assert answer.replica_id == "fake-1" and 3.0 <= clock.now() < 3.2
    # a boot longer than the request's timeout: a clear error at the deadline, not before
    await pool.scale_to(2)
    prov._replicas.pop("fake-1")
    start = clock.now()
    pool._sleep = lambda s: _advance(clock, s)
    with pytest.raises(NoReplicaError, match="became ready"):
        await pool.infer("m", X, timeout_s=2.0)
    assert clock.now() - start == pytest.approx(2.0, abs=0.06)


async def _advance(clock, seconds):
    clock.advance(seconds)
    await asyncio.sleep(0)


async def test_boot_failures_are_retried_with_exponential_backoff():
    clock = ManualClock()
    pool, prov, _ = _fake_pool(clock, health_interval_s=0.2, fail_boots=True)
    reached = asyncio.Event()

    async def sleep(seconds):
        clock.advance(seconds)
        if clock.now() >= 30.0:
            reached.set()
        await asyncio.sleep(0)

    pool._sleep = sleep
    await pool.start(1)
    await reached.wait()
    await pool.close()
    # a tight loop would have tried 150 times in 30 s; backoff 0.4, 0.8, ... 25.6 s: 7 tries
    assert 5 <= len(prov.scale_calls) <= 9


async def test_a_crashing_health_loop_restarts_and_close_surfaces_it_when_it_gives_up():
    clock = ManualClock()
    pool, prov, _ = _fake_pool(clock, health_interval_s=0.2, max_health_crashes=3)
    ticks = []

    async def broken_tick(session, backoff):
        ticks.append(clock.now())
        raise RuntimeError("boom")

    pool._health_tick = broken_tick
    pool._sleep = lambda s: _advance(clock, s)
    await pool.start(0)
    while not pool._health_task.done():
        await asyncio.sleep(0)
    assert len(ticks) == 3 and pool.health_crashes == 3  # restarted twice, then gave up
    with pytest.raises(PoolError, match="boom"):
        await pool.close()


async def test_a_fleet_address_that_stays_down_is_reported_once_not_on_every_check(caplog):
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    clock = ManualClock()
    pool = ReplicaPool(StaticProvisioner([dead]), health_interval_s=1.0, clock=clock)
    ticks = asyncio.Event()
    seen = []

    async def sleep(seconds):
        clock.advance(seconds)
        seen.append(seconds)
        if len(seen) >= 6:
            ticks.set()
        await asyncio.sleep(0)

    pool._sleep = sleep
    with caplog.at_level("WARNING", logger="tidegate.pool"):
        await pool.start(1)
        await ticks.wait()
        await pool.close()
    gone = [r for r in caplog.records if "is gone" in r.getMessage()]
    assert len(seen) >= 6 and len(gone) == 1, [r.getMessage() for r in caplog.records]
