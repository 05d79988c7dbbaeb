"""A user's model the burst path cannot run (a dynamic sequence length: ``burst.graph`` refuses
its graph) is not spilled to 503s under load: the requests routing sends to the burst path go
to the VMs, while ``X-Tidegate-Route: burst`` still says why it cannot.

Before: a gateway on its default threshold policy answered 51 of 400 such requests (64 at a
time, one replica) with 503 "model ... cannot run on the burst path", the VM idle enough for
all of them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from burst.graph import GraphError
from burst.exchange import plan_unavailable
from gateway.call import CallContext
from gateway.dispatch import Dispatcher
from gateway.errors import BadRequest
from gateway.metrics import GatewayMetrics
from gateway.tenants import TenantRegistry
from policies.costs import PriceTable
from policies.routing import Decision, Reason, Route
from vmpool.artifact import ModelConfig, TensorSpec
from vmpool.codec import InferRequest
from vmpool.pool_routing import PoolAnswer

CFG = ModelConfig(
    name="text",
    inputs=(TensorSpec("ids", "INT64", (-1, -1)),),
    outputs=(TensorSpec("output", "FP32", (-1, 4)),),
)


class _Pool:
    def __init__(self):
        self.calls = 0
        self.outstanding = 0

    def ready(self):
        return ["r0"]

    def booting(self):
        return []

    async def infer(self, model, inputs, request_id=None, timeout_s=None):
        self.calls += 1
        rows = next(iter(inputs.values())).shape[0]
        return PoolAnswer({"output": np.zeros((rows, 4), np.float32)}, "r0", 1, 1.0)


class _Burst:
    """The burst service's answer for a model whose graph it cannot build."""

    def __init__(self):
        self.calls = 0

    async def infer(self, model, inputs, *, workers, request_id=None):
        self.calls += 1
        await asyncio.sleep(0)
        try:
            raise GraphError("input 'ids' has a dynamic dimension 1 besides the batch")
        except GraphError as exc:
            raise plan_unavailable(model, exc) from exc  # as the service does


class _Spill:
    """Every request to the burst path while it is enabled (a threshold past its limit)."""

    name = "spill"

    def route(self, request, state):
        if request.forced_route == "burst" or state.burst_enabled:
            return Decision(Route.BURST, Reason.VM_OVER_THRESHOLD, request.workers or 4)
        return Decision(Route.VM, Reason.VM_HAS_CAPACITY)


def _dispatcher():
    tenants = TenantRegistry([])
    pool, burst = _Pool(), _Burst()
    d = Dispatcher(
        models={"text": CFG},
        tenants=tenants,
        pool=pool,  # type: ignore[arg-type]
        burst=burst,
        policy=_Spill(),
        ledger=None,
        metrics=GatewayMetrics(),
        prices=PriceTable(),
    )
    return d, tenants.tenants()[0], pool, burst


def _request():
    return InferRequest(id=None, inputs={"ids": np.ones((1, 20), np.int64)}, outputs=None)


def test_spilled_requests_of_a_model_the_burst_path_cannot_run_are_served_on_vms():
    d, tenant, pool, burst = _dispatcher()

    async def run():
        ctx = [CallContext(tenant=tenant, model="text") for _ in range(40)]
        # 40 at once: all spilled before the first burst attempt failed
        first = await asyncio.gather(*(d.infer(c, _request()) for c in ctx))
        tried = burst.calls
        ctx = [CallContext(tenant=tenant, model="text") for _ in range(5)]
        later = [await d.infer(c, _request()) for c in ctx]
        return first, later, tried

    first, later, tried = asyncio.run(run())
    assert all(r.path == "vm" for r in first + later)
    assert pool.calls == 45
    assert burst.calls == tried  # once known, straight to the VMs
    calls = burst.calls
    # forced there, no retry can help: a 400 that says why (it was a 503 to retry)
    with pytest.raises(BadRequest, match="dynamic dimension 1"):
        asyncio.run(
            d.infer(CallContext(tenant=tenant, model="text", forced_route="burst"), _request())
        )
    assert burst.calls == calls + 1
