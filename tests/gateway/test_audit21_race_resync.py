"""A replica out of rotation while the model repository changes (session 21's concurrency
audit): it must not come back serving what it missed. Two real model servers behind a gateway
(static provisioner), the second through a fault proxy that fails its health probes."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

from tests.support.fault_proxy import FaultProxy
from vmpool.export import export_zoo

from .conftest import running_model_server, serve_app

DELAY = {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": [1.0] * 16}]}


def _until(check, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_replica_unhealthy_when_a_model_is_loaded_serves_it_once_back(tmp_path):
    """The delay model is loaded while replica B fails its health checks; B comes back.
    Before, B was never told (only ready replicas were), the pool routed to it again and about
    half of the model's requests were 404 'unknown model' from B for as long as it ran."""
    from gateway.app import create_app
    from gateway.settings import Settings

    repo = tmp_path / "models"
    export_zoo("mlp", repo)
    export_zoo("delay", tmp_path / "later", options={"delay_ms": 1.0, "per_item_ms": 0.0})
    with (
        running_model_server(repo, tmp_path / "a.log") as a,
        running_model_server(repo, tmp_path / "b.log") as b,
    ):
        proxy = FaultProxy(b).start()
        settings = Settings.load(
            None,
            data_dir=tmp_path / "data",
            repo=repo,
            grpc_port=-1,
            vm={
                "provisioner": "static",
                "urls": [a, proxy.endpoint],
                "health_interval_s": 0.1,
                "coalesce": False,
            },
            burst={"enabled": False},
            routing_policy="vm-only",
        )
        app = create_app(settings)
        try:
            with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as c:
                pool = app.state.gateway.pool
                _until(lambda: len(pool.ready()) == 2, "two ready replicas")
                proxy.fail_next(10_000, 503)  # B's probes fail: out of rotation
                _until(lambda: len(pool.ready()) == 1, "B out of rotation")
                shutil.copytree(tmp_path / "later" / "delay", repo / "delay")
                r = c.post("/v2/repository/models/delay/load")
                assert r.status_code == 200, r.text
                with proxy._lock:  # B answers again (FaultProxy has no 'stop failing')
                    proxy._faults.clear()
                _until(lambda: len(pool.ready()) == 2, "B back in rotation")
                statuses = [
                    c.post("/v2/models/delay/infer", json=DELAY).status_code for _ in range(30)
                ]
                assert statuses == [200] * 30, statuses
                assert any(path.endswith("/delay/load") for _, path, _ in proxy.seen)
        finally:
            proxy.stop()
