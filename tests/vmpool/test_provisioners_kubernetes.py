"""The Kubernetes provisioner against a loopback API server that checks the wire and the auth."""

from __future__ import annotations

import asyncio

import pytest

from tests.vmpool.fake_fleet import FakeClient
from tests.vmpool.k8s_checker import KubeChecker
from vmpool.pool import ReplicaPool
from vmpool.provisioners.base import Provisioner, ReplicaState
from vmpool.provisioners.kubernetes import KubernetesError, KubernetesProvisioner


@pytest.fixture
def api():
    checker = KubeChecker(token="t0ken").start()
    yield checker
    checker.stop()


def _prov(api, token_file=None, **kw):
    return KubernetesProvisioner(
        "model-server",
        namespace="serving",
        api_url=api.endpoint,
        token=None if token_file else "t0ken",
        token_file=token_file,
        poll_interval_s=3600,
        **kw,
    )


@pytest.mark.parametrize("slices", [True, False])
async def test_scale_readiness_drain_and_replacement(api, slices):
    prov = _prov(api, use_endpoint_slices=slices)
    assert isinstance(prov, Provisioner)
    try:
        await prov.scale_to(3)
        assert api.replicas == 3
        reps = prov.replicas()
        assert len(reps) == 3 and all(r.state == ReplicaState.BOOTING for r in reps)
        api.set_ready("model-server-1", "model-server-2")
        await prov.refresh()
        ready = sorted(r.url for r in prov.replicas() if r.state == ReplicaState.READY)
        assert ready == ["http://10.1.0.1:8000", "http://10.1.0.2:8000"]

        await prov.drain("model-server-1")  # that pod goes, not whichever the controller likes
        assert api.replicas == 2 and set(api.pods) == {"model-server-2", "model-server-3"}
        prov.mark_failed("model-server-2")  # deleted; the Deployment replaces it
        await asyncio.gather(*prov._tasks)
        await prov.refresh()
        assert "model-server-2" not in {r.id for r in prov.replicas()}
        assert len(prov.replicas()) == 2 and api.replicas == 2
        patches = [p for m, p, s in api.log if m == "PATCH"]
        assert all(s == 200 for _, _, s in api.log)
        assert "/api/v1/namespaces/serving/pods/model-server-1" in patches
    finally:
        await prov.close()


async def test_pods_not_yet_listed_count_as_booting(api):
    prov = _prov(api)
    try:
        await prov.scale_to(2)
        api.pods.clear()  # the API has not created them yet
        await prov.refresh()
        assert [r.state for r in prov.replicas()] == [ReplicaState.BOOTING] * 2
    finally:
        await prov.close()


async def test_the_token_is_sent_as_bearer_and_a_wrong_one_is_refused(api, tmp_path):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    prov = _prov(api, token_file=token)
    try:
        await prov.scale_to(1)
        assert api.replicas == 1
        token.write_text("stale")  # re-read on every call (projected tokens rotate)
        with pytest.raises(KubernetesError, match="401"):
            await prov.scale_to(2)
        assert api.replicas == 1
    finally:
        await prov.close()


async def test_the_pool_drives_the_deployment_like_the_local_provisioner(api):
    prov = _prov(api)
    pool = ReplicaPool(prov, FakeClient(), seed=0)
    try:
        await pool.scale_to(3)
        api.set_ready()
        await prov.refresh()
        assert len(pool.ready()) == 3
        await pool.scale_to(1)
        # the two drains' scale PATCHes race; the network delivers them in the wrong order
        api.hold_next_scale()
        while pool.draining():
            await asyncio.sleep(0)
        await prov.refresh()
        assert api.replicas == 1 and len(pool.ready()) == 1
    finally:
        await pool.close()
