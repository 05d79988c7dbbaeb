"""The replica pool over real model-server processes started by the local provisioner."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from vmpool.pool import NoReplicaError, ReplicaPool
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
        with pytest.raises(NoReplicaError):
            await pool.infer("mlp", {"x": np.zeros((1, 4), np.float32)})
        waited = await _wait(lambda: len(pool.ready()) == 2, 120)
        assert waited >= 1.0  # the boot delay is honoured, like a VM that takes time to boot
        answers = await asyncio.gather(*(pool.infer("mlp", {"x": np.ones((1, 4), np.float32)})
                                         for _ in range(20)))
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
        await _wait(lambda: any(r.id != victim and r.state == ReplicaState.READY
                                for r in prov.replicas()), 120)
        answer = await pool.infer("mlp", {"x": np.ones((1, 4), np.float32)})
        assert answer.replica_id != victim
    finally:
        await pool.close()


async def test_power_of_two_choices_prefers_the_less_loaded_replica():
    pool = ReplicaPool(StaticProvisioner(["http://127.0.0.1:1", "http://127.0.0.1:2"]), seed=0)
    pool._outstanding = {"static-1": 5, "static-2": 0}
    assert {pool._choose(set()).id for _ in range(20)} == {"static-2"}
    assert pool._choose({"static-2"}).id == "static-1"


@pytest.mark.slow
async def test_a_replica_that_cannot_boot_is_retried_with_backoff(tmp_path):
    empty = tmp_path / "empty-repo"
    empty.mkdir()  # the model server exits at once: no models
    prov = LocalProvisioner(empty, log_dir=tmp_path)
    pool = ReplicaPool(prov, health_interval_s=0.2)
    try:
        await pool.start(1)
        await _wait(lambda: prov.boot_failures >= 2, 60)
        t0, before = time.monotonic(), prov.boot_failures
        await asyncio.sleep(3.0)
        # a tight loop would fail every ~1.5 s (process start); the backoff spaces retries out
        assert prov.boot_failures - before <= 2
        assert pool.ready() == []
        assert "no models" in (tmp_path / "local-1.log").read_text()
    finally:
        await pool.close()
    assert prov.replicas() == []
