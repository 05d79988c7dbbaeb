"""A half-open circuit's trial request that is cancelled (its client went away: a gRPC call
cancelled, an HTTP client that hung up) releases the trial: the next request tries the replica.
Before, the trial stayed 'in flight' for good and the replica got no traffic again."""

from __future__ import annotations

import asyncio

import numpy as np

from policies.state import ManualClock
from tests.vmpool.fake_fleet import FakeClient, FakeProvisioner
from vmpool.breaker import Breakers
from vmpool.pool import ReplicaPool

X = {"x": np.ones((1, 4), np.float32)}


async def test_a_cancelled_trial_request_lets_the_next_one_try_the_replica():
    clock = ManualClock()
    prov, client = FakeProvisioner(clock), FakeClient()
    prov.client = client
    breakers = Breakers(failure_threshold=3, open_s=5.0, clock=clock.now)
    pool = ReplicaPool(prov, client, clock=clock.now, seed=0, breakers=breakers)
    await pool.scale_to(1)
    prov.boot_all()
    for _ in range(3):
        breakers.on_failure("fake-1")
    assert pool.ready() == []
    clock.advance(5.0)  # half-open: one trial
    client.gate.clear()  # the trial hangs on the replica ...
    trial = asyncio.ensure_future(pool.infer("m", X))
    while not client.in_flight.get("http://fake-1"):
        await asyncio.sleep(0)
    assert pool.ready() == []  # one trial at a time
    trial.cancel()  # ... and its caller goes away
    await asyncio.gather(trial, return_exceptions=True)
    client.gate.set()
    assert [r.id for r in pool.ready()] == ["fake-1"]
    answer = await pool.infer("m", X)
    assert answer.replica_id == "fake-1" and not breakers.is_open("fake-1")
