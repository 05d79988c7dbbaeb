"""A replica's circuit breaker under real traffic (session 21's concurrency audit): a half-open
circuit's one trial request that ends neither well nor as a replica failure (it times out, or
its client goes away) must not leave the replica out of rotation for good.

A gateway (static provisioner) in front of a real model server through a fault proxy."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.fault_proxy import FaultProxy

from .conftest import serve_app

MLP = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.5] * 784}]}


@pytest.mark.slow
def test_a_trial_request_that_times_out_does_not_shut_the_replica_out_for_good(
    model_server, small_repo, tmp_path
):
    """Three 503s open the replica's circuit; the first request after its cool-off (the trial)
    times out (504), then the replica answers again. Before, the trial was never released:
    the circuit stayed half-open with a trial 'in flight', the pool saw no ready replica and
    every request was 503 'no VM replica is ready' for as long as the gateway ran."""
    from gateway.app import create_app
    from gateway.settings import Settings

    proxy = FaultProxy(model_server).start()
    settings = Settings.load(
        None,
        data_dir=tmp_path,
        repo=small_repo,
        grpc_port=-1,
        # no health probes through the proxy: the faults go to infer requests only
        vm={
            "provisioner": "static",
            "urls": [proxy.endpoint],
            "health_interval_s": 3600,
            "request_timeout_s": 1.0,
        },
        burst={"enabled": False},
        routing_policy="vm-only",
    )
    try:
        with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as c:
            assert c.post("/v2/models/mlp/infer", json=MLP).status_code == 200
            proxy.fail_next(3, 503)
            for _ in range(3):
                assert c.post("/v2/models/mlp/infer", json=MLP).status_code == 503
            proxy.delay_next(1, 3.0)  # the trial: held past the 1 s request timeout
            statuses = []
            deadline = time.monotonic() + 30
            while 200 not in statuses and time.monotonic() < deadline:
                statuses.append(c.post("/v2/models/mlp/infer", json=MLP).status_code)
                if statuses[-1] == 503:
                    time.sleep(0.1)  # the circuit's cool-off (5 s) is the pool's, not ours
            assert 504 in statuses, statuses
            assert statuses[-1] == 200, f"replica never back in rotation: {statuses[-5:]}"
    finally:
        proxy.stop()
