"""The live pool's replica choice on a fleet serving several models: the simulator's rule
(``policies.routing.replica_choice``), over the pool's outstanding requests per replica and model
and the batch times its answers report."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.gateway.conftest import wait_ready
from tests.support.model_server import spawn_model_server
from vmpool.export import export_zoo
from tests.vmpool.fake_fleet import FakeClient
from vmpool.pool import ReplicaPool
from vmpool.pool_routing import ReplicaMisses
from vmpool.provisioners.static import StaticProvisioner


def _pool(seed: int = 0) -> ReplicaPool:
    return ReplicaPool(StaticProvisioner(["http://127.0.0.1:1", "http://127.0.0.1:2"]), seed=seed)


def _picks(pool: ReplicaPool, model: str) -> set[str]:
    return {pool._choose(set(), model).id for _ in range(20)}


def test_a_tight_request_skips_the_replica_whose_request_is_a_heavy_models():
    pool = _pool()
    pool.describe_model("tight", 8)
    pool.describe_model("heavy", 8)
    pool._costs.batch_ms = {"tight": {1: 1.0}, "heavy": {1: 200.0}}
    pool._outstanding = {"static-1": 1, "static-2": 3}
    pool._by_model = {"static-1": {"heavy": 1}, "static-2": {"tight": 3}}
    assert _picks(pool, "tight") == {"static-2"}
    # rows alone (one model, or no model named) keep power of two choices' pick
    assert _picks(pool, None) == {"static-1"}
    pool.describe_model("heavy", 8, computes=False)  # (its batches only wait: not in the way)
    assert _picks(pool, "tight") == {"static-1"}


def test_one_model_keeps_power_of_two_choices():
    pool = _pool()
    pool.describe_model("m", 8)
    pool._outstanding = {"static-1": 5, "static-2": 0}
    pool._by_model = {"static-1": {"m": 5}}
    assert _picks(pool, "m") == {"static-2"}


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory):
    """Two real model servers, each holding ``tight`` (a 60 ms batch) and ``heavy`` (600 ms):
    delay models, whose waits stand in for compute here."""
    repo = tmp_path_factory.mktemp("sharedfleet-repo")
    for name, delay_ms in (("tight", 60.0), ("heavy", 600.0)):
        export_zoo(
            "delay",
            repo,
            artifact_name=name,
            max_batch_size=8,
            options={"delay_ms": delay_ms, "per_item_ms": 0.0},
        )
    logs = tmp_path_factory.mktemp("sharedfleet-logs")
    # both start at once (each imports torch and warms its models: most of this test's time)
    servers = [spawn_model_server(repo, logs / f"{k}.log") for k in "ab"]
    try:
        for proc, url in servers:
            wait_ready(url + "/v2/health/ready", proc)
        yield [url for _, url in servers]
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            proc.wait(30)


async def _tight_beside_heavy(urls: list[str], heavy_computes: bool) -> tuple[str, list]:
    """One heavy request in flight on one replica, then three tight ones at once: (the heavy
    request's replica, each tight answer)."""
    pool = ReplicaPool(StaticProvisioner(urls), seed=1)
    pool.describe_model("tight", 8)
    pool.describe_model("heavy", 8, computes=heavy_computes)
    x = {"input": np.ones((1, 16), np.float32)}
    try:
        heavy = asyncio.create_task(pool.infer("heavy", x))
        while not pool.outstanding:  # (sent: the pool counts it before it awaits the replica)
            await asyncio.sleep(0)
        heavy_on = next(rid for rid, n in pool._outstanding.items() if n)
        tight = await asyncio.gather(*(pool.infer("tight", x) for _ in range(3)))
        await heavy
        return heavy_on, tight
    finally:
        await pool.close()


@pytest.mark.slow  # (two model servers start: 8-25 s, most of it importing torch)
async def test_live_tight_requests_go_to_the_replica_without_the_heavy_batch(two_replicas):
    heavy_on, tight = await _tight_beside_heavy(two_replicas, heavy_computes=True)
    assert all(a.replica_id != heavy_on for a in tight)
    assert all(a.outputs["output"].shape == (1, 16) for a in tight)
    # by rows alone the third went to the heavy replica (1 row against 2); a heavy model's
    # batch would hold it there. The delay model only waits, so it is left to rows:
    heavy_on, tight = await _tight_beside_heavy(two_replicas, heavy_computes=False)
    assert any(a.replica_id == heavy_on for a in tight)


async def test_a_second_look_that_finds_the_replica_too_late_sends_nothing():
    client = FakeClient()
    pool = ReplicaPool(StaticProvisioner(["http://a"]), client, seed=0)
    pool.describe_model("tight", 8)
    pool.describe_model("heavy", 8)
    pool._costs.batch_ms = {"tight": {1: 1.0}, "heavy": {1: 200.0}}
    pool._by_model = {"static-1": {"heavy": 1}}  # a heavy request out on the one replica
    x = {"x": np.ones((1, 2), np.float32)}
    seen: list[float] = []
    with pytest.raises(ReplicaMisses) as caught:
        await pool.infer("tight", x, second_look=lambda ms: seen.append(ms) or ms > 50.0)
    assert seen == [pytest.approx(201.0)] and caught.value.answer_ms == pytest.approx(201.0)
    assert client.calls == []  # nothing was sent
    answer = await pool.infer("tight", x, second_look=lambda ms: ms > 500.0)  # it meets
    assert answer.replica_id == "static-1" and client.calls == ["http://a"]
