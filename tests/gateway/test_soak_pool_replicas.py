"""A gateway whose VM replicas die and are replaced, again and again, holds nothing of the dead
ones (found by ops/bench/soak.py's review of what grows): before, the pool kept each replaced
replica's id (booted, unhealthy), its address (gone), its in-flight count and its open circuit
for as long as it ran, so a fleet with a flaky replica grew the gateway at every replacement."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

import vmpool.pool
from policies.state import ManualClock
from tests.vmpool.fake_fleet import FakeClient, FakeProvisioner
from vmpool.client import ReplicaError
from vmpool.coalesce import Coalescer
from vmpool.health import BootBackoff
from vmpool.http1 import Http1Pool
from vmpool.pool import LIVE_MISSES, NoReplicaError, ReplicaPool

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


class _ForgettingClient(FakeClient):
    def __init__(self):
        super().__init__()
        self.forgotten: list[str] = []

    def forget(self, base_url: str) -> None:
        self.forgotten.append(base_url)


async def test_replicas_replaced_many_times_leave_nothing_of_the_dead_ones(monkeypatch):
    clock = ManualClock()
    prov, client = FakeProvisioner(clock), _ForgettingClient()
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
        for _ in range(LIVE_MISSES):  # gone: marked failed, a new one boots
            await pool._health_tick(None, backoff)
        clock.advance(60.0)
        await pool._health_tick(None, backoff)
    live = {r.id for r in prov.replicas()} | {r.url for r in prov.replicas()}
    assert len(prov.failed) == 30
    assert _held(pool) <= live, f"state of dead replicas kept: {sorted(_held(pool) - live)[:5]}"
    # and the client was told, once per dead replica, to drop what it keeps for its address
    assert sorted(client.forgotten) == sorted(f"http://{rid}" for rid in prov.failed)


async def test_the_batching_state_of_a_forgotten_replica_is_dropped():
    async def send(base_url, model, inputs, outputs, request_id, timeout_s):
        return {"y": inputs["x"]}, SimpleNamespace(service_ms=1.0)

    coalescer = Coalescer(send)
    coalescer.set_max_rows("m", 8)
    coalescer.set_max_rows("other", 8)
    x = {"x": np.ones((1, 4), np.float32)}
    urls = [f"http://127.0.0.1:{40000 + i}" for i in range(20)]
    for url in urls:
        await coalescer.infer(url, "m", x, None, None, 5.0)
        await coalescer.infer(url, "other", x, None, None, 5.0)
    for url in urls[:-1]:  # replaced, one after another
        coalescer.forget(url)
    slots = [coalescer._in_flight, coalescer._slots, coalescer._round_trip_s, coalescer._busy]
    assert {slot[0] for kept in slots for slot in kept} <= {urls[-1]}
    assert set(coalescer._round_trip_s) == {(urls[-1], "m"), (urls[-1], "other")}


async def test_the_connections_of_a_forgotten_replica_are_closed_and_dropped():
    async def answer(reader, writer):
        while await reader.readuntil(b"\r\n\r\n"):
            length = 0
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    servers = [await asyncio.start_server(answer, "127.0.0.1", 0) for _ in range(3)]
    pool = Http1Pool()
    try:
        urls = [f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}" for s in servers]
        for url in urls:
            await pool.post(url, "/x", b"", {}, 5.0)
        kept = pool._idle[pool._host(urls[0])[:2]][0]
        for url in urls[:2]:
            pool.forget(url)
        assert set(pool._hosts) == {urls[2]} and len(pool._idle) == 1
        assert kept.transport is None or kept.transport.is_closing()
    finally:
        pool.close()
        for s in servers:
            s.close()


async def test_a_replica_slow_to_answer_its_health_probe_is_kept_and_a_dead_one_replaced(
    monkeypatch,
):
    """Under load (the soak's first run, a starved host) the only replica missed one probe
    and was killed as gone; now only LIVE_MISSES ticks in a row replace it."""
    clock = ManualClock()
    prov, client = FakeProvisioner(clock), FakeClient()
    prov.client = client
    pool = ReplicaPool(prov, client, clock=clock.now, seed=0)
    slow_ticks: set[int] = set()
    tick = [0]

    async def probe(session, url, raw=False):
        return tick[0] not in slow_ticks

    monkeypatch.setattr(vmpool.pool, "probe", probe)
    backoff = BootBackoff(pool)
    await pool.scale_to(1)
    prov.boot_all()
    # slow now and then, never LIVE_MISSES ticks in a row: kept
    slow_ticks.update(t for t in range(40) if t % LIVE_MISSES)
    for tick[0] in range(40):
        await pool._health_tick(None, backoff)
    assert prov.failed == []
    # silent from now on: replaced after LIVE_MISSES ticks
    slow_ticks.update(range(40, 100))
    for tick[0] in range(40, 40 + LIVE_MISSES):
        await pool._health_tick(None, backoff)
        assert len(prov.failed) == (tick[0] == 40 + LIVE_MISSES - 1)
