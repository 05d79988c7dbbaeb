"""A gateway whose VM replicas die and are replaced, again and again, holds nothing of the dead
ones (found by ops/bench/soak.py's review of what grows): before, the pool kept each replaced
replica's id (booted, unhealthy), its address (gone), its in-flight count and its open circuit
for as long as it ran, so a fleet with a flaky replica grew the gateway at every replacement."""

from __future__ import annotations

import numpy as np
import pytest

import vmpool.pool
from policies.state import ManualClock
from tests.vmpool.fake_fleet import FakeClient, FakeProvisioner
from vmpool.client import ReplicaError
from vmpool.health import BootBackoff
from vmpool.pool import NoReplicaError, ReplicaPool

X = {"input": np.ones((1, 4), np.float32)}


def _held(pool: ReplicaPool) -> set[str]:
    """Every replica id or address the pool keeps state for."""
    return (
        set(pool._boot_seen)
        | set(pool._unhealthy)
        | set(pool._gone_urls)
        | set(pool._outstanding)
        | set(pool.breakers._circuits)
    )


async def test_replicas_replaced_many_times_leave_nothing_of_the_dead_ones(monkeypatch):
    clock = ManualClock()
    prov, client = FakeProvisioner(clock), FakeClient()
    prov.client = client
    pool = ReplicaPool(prov, client, clock=clock.now, seed=0, max_attempts=1)
    answering: set[str] = set()

    async def probe(session, url, raw=False):
        return url in answering

    monkeypatch.setattr(vmpool.pool, "probe", probe)
    backoff = BootBackoff(pool)
    await pool.scale_to(1)
    for _ in range(30):
        prov.boot_all()
        (replica,) = prov.replicas()
        answering.add(replica.url)
        await pool._health_tick(None, backoff)
        await pool.infer("m", X)
        # it dies: requests fail (its circuit opens), then the health check replaces it
        client.dead.add(replica.url)
        answering.discard(replica.url)
        for _ in range(3):
            with pytest.raises((ReplicaError, NoReplicaError)):
                await pool.infer("m", X)
        await pool._health_tick(None, backoff)  # gone: marked failed, a new one boots
        clock.advance(60.0)
        await pool._health_tick(None, backoff)
    live = {r.id for r in prov.replicas()} | {r.url for r in prov.replicas()}
    assert len(prov.failed) == 30
    assert _held(pool) <= live, f"state of dead replicas kept: {sorted(_held(pool) - live)[:5]}"
