"""``BurstUnavailable.refused``: the burst path refusing a model as asked (its graph, its plan,
its artifact) is a typed signal, not an outage. The gateway sends such a model's spilled
requests to the VMs and answers a forced burst request 400; an outage stays a 503 to retry,
and the model keeps being spilled to the burst path."""

from __future__ import annotations

import asyncio

import pytest

from burst.exchange import BurstUnavailable, plan_unavailable
from burst.graph import GraphError
from burst.plan import PlanError
from burst.store.base import StoreError
from gateway.call import CallContext
from gateway.errors import BadRequest, Unavailable
from tests.burst import test_byo_routing as byo_routing
from vmpool.artifact import ArtifactError


@pytest.mark.parametrize(
    "error",
    [
        GraphError("input 'ids' has a dynamic dimension 1 besides the batch"),
        PlanError("no plan fits 128 MB"),
        ArtifactError("config.json: missing 'inputs'"),
    ],
)
def test_a_graph_plan_or_artifact_the_burst_path_refuses_is_a_refusal(error):
    got = plan_unavailable("m", error)
    assert got is not None and got.refused and got.retry_after_s is None
    assert str(error) in str(got)


@pytest.mark.parametrize("error", [StoreError("bucket unreachable"), OSError("disk full")])
def test_a_store_that_failed_is_an_outage_to_retry_not_a_refusal(error):
    got = plan_unavailable("m", error)
    assert got is not None and not got.refused and got.retry_after_s == 1.0
    assert plan_unavailable("m", ValueError("a bug")) is None


class _Burst:
    """A burst service that fails every request with ``error``."""

    def __init__(self, error: BurstUnavailable):
        self.error, self.calls = error, 0

    async def infer(self, model, inputs, *, workers, request_id=None):
        self.calls += 1
        await asyncio.sleep(0)
        raise self.error


def _dispatcher(error: BurstUnavailable):
    """A dispatcher on a VM pool that answers and a routing policy that spills every request to
    the burst path (``test_byo_routing``'s), whose burst service fails with ``error``."""
    d, tenant, pool, _ = byo_routing._dispatcher()
    d.burst = burst = _Burst(error)
    return d, tenant, pool, burst


def _infer(d, tenant, **ctx):
    return asyncio.run(
        d.infer(CallContext(tenant=tenant, model="text", **ctx), byo_routing._request())
    )


def test_a_refused_model_goes_to_the_vms_and_a_forced_burst_request_is_a_400():
    refusal = plan_unavailable("text", GraphError("unsupported call target 'aten.foo'"))
    d, tenant, pool, burst = _dispatcher(refusal)
    assert _infer(d, tenant).path == "vm"  # tried on the burst path once, then the VMs
    assert _infer(d, tenant).path == "vm"
    assert burst.calls == 1 and pool.calls == 2
    with pytest.raises(BadRequest, match="aten.foo.*without X-Tidegate-Route: burst"):
        _infer(d, tenant, forced_route="burst")


def test_an_outage_of_the_burst_path_stays_a_503_to_retry_and_the_model_is_spilled_again():
    outage = BurstUnavailable("the function platform is failing", retry_after_s=2.0)
    d, tenant, pool, burst = _dispatcher(outage)
    with pytest.raises(Unavailable) as forced:
        _infer(d, tenant, forced_route="burst")
    assert forced.value.status == 503 and forced.value.headers == {"Retry-After": "2"}
    for _ in range(2):  # spilled: the burst path tried each time, nothing remembered
        with pytest.raises(Unavailable):
            _infer(d, tenant)
    assert burst.calls == 3 and pool.calls == 0


def test_a_plan_refused_for_one_worker_count_leaves_the_model_on_the_burst_path_for_others():
    """No plan fits at 6 workers: those requests go to the VMs (and a forced one is a 400),
    but the model's other requests are still spilled to the burst path."""
    refusal = plan_unavailable("text", PlanError("no plan fits 128 MB at 6 workers"))
    assert refusal is not None and refusal.refused and not refusal.model_wide
    d, tenant, pool, burst = _dispatcher(refusal)
    assert _infer(d, tenant, workers=6).path == "vm"
    assert _infer(d, tenant, workers=6).path == "vm"
    assert burst.calls == 1  # remembered for 6 workers
    with pytest.raises(BadRequest, match="no plan fits"):
        _infer(d, tenant, workers=6, forced_route="burst")
    _infer(d, tenant, workers=2)
    assert burst.calls == 3  # the forced request and 2 workers: still tried on the burst path


def test_a_graph_refusal_holds_for_every_worker_count():
    refusal = plan_unavailable("text", GraphError("unsupported call target 'aten.foo'"))
    assert refusal is not None and refusal.model_wide
    d, tenant, pool, burst = _dispatcher(refusal)
    _infer(d, tenant, workers=6)
    assert _infer(d, tenant, workers=2).path == "vm" and burst.calls == 1
