"""The gateway's second look at a VM request on a fleet serving several models: slo-aware sent it
to the VMs on the rows per replica, but the replica the pool picks holds another model's long
batch; the request goes to functions that meet its SLO (gateway/replica_look.py, as the
simulator does it: ops/sim/shared.py ``_misses``)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from burst.exchange import BurstAnswer
from gateway.call import CallContext
from gateway.dispatch import Dispatcher
from gateway.metrics import GatewayMetrics
from gateway.tenants import TenantRegistry
from policies.costs import PriceTable
from policies.routing import SloAware
from policies.state import BurstState, LiveState, ModelStats, VmState
from tests.vmpool.fake_fleet import FakeClient
from vmpool.artifact import ModelConfig, TensorSpec
from vmpool.codec import InferRequest
from vmpool.pool import ReplicaPool
from vmpool.provisioners.static import StaticProvisioner

TIGHT = ModelConfig(
    name="tight",
    inputs=(TensorSpec("x", "FP32", (-1, 2)),),
    outputs=(TensorSpec("x", "FP32", (-1, 2)),),
    slo_ms=20.0,
)


class _Burst:
    def __init__(self):
        self.calls = 0

    async def infer(self, model, inputs, *, workers, request_id=None):
        self.calls += 1
        await asyncio.sleep(0)
        return BurstAnswer(dict(inputs), workers, [(6, 1024)], 0, 6.0, 0.0)


def _gateway(heavy_rows: int):
    """One replica holding ``heavy_rows`` requests of a 200 ms model; the live view has warm
    functions that answer the tight model in ~5 ms and a VM that the rows alone say meets."""
    client = FakeClient()
    pool = ReplicaPool(StaticProvisioner(["http://a"]), client, seed=0)
    pool.describe_model("tight", 8)
    pool.describe_model("heavy", 8)
    pool._costs.batch_ms = {"tight": {1: 0.2}, "heavy": {1: 200.0}}
    if heavy_rows:
        pool._by_model = {"static-1": {"heavy": heavy_rows}}
    tenants, burst = TenantRegistry([]), _Burst()
    d = Dispatcher(
        models={"tight": TIGHT},
        tenants=tenants,
        pool=pool,
        burst=burst,
        policy=SloAware(),
        ledger=None,
        metrics=GatewayMetrics(),
        prices=PriceTable(),
    )
    stats = ModelStats(vm_service_ms_by_batch=((1, 0.2),), burst_predicted_ms=5.0)
    state = LiveState(
        0.0,
        VmState(1, 0, heavy_rows, outstanding_per_replica=(heavy_rows,)),
        True,
        BurstState(warm_instances=8, free_concurrency=8),
        {"tight": stats},
    )
    d.live_state = lambda: state  # type: ignore[method-assign]
    return d, tenants.tenants()[0], client, burst


@pytest.mark.parametrize("heavy_rows,path", [(1, "burst"), (0, "vm")])
def test_a_request_behind_another_models_batch_goes_to_functions(heavy_rows, path):
    d, tenant, client, burst = _gateway(heavy_rows)
    request = InferRequest(id=None, inputs={"x": np.ones((1, 2), np.float32)}, outputs=None)
    result = asyncio.run(d.infer(CallContext(tenant=tenant, model="tight"), request))
    assert result.path == path
    assert (burst.calls, len(client.calls)) == ((1, 0) if path == "burst" else (0, 1))
    text = d.metrics.render().decode()
    assert ('reason="replica-misses"' in text) == (path == "burst")
