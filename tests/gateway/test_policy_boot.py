"""Right after start, while the only replica boots: not ready yet, and a VM request waits for the
replica instead of failing (as Knative's activator buffers during a cold start)."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app


@pytest.mark.slow
def test_a_request_during_the_boot_waits_for_the_replica(small_repo, tmp_path):
    settings = Settings.load(
        None,
        data_dir=tmp_path,
        repo=small_repo,
        routing_policy="vm-only",
        vm={
            "replicas": 1,
            "boot_delay_s": 2.0,
            "threads": 1,
            "request_timeout_s": 170.0,
        },  # bounds the wait too
        burst={"enabled": False},
    )
    body = {
        "inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]
    }
    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=180) as c:
        assert c.get("/v2/health/ready").status_code == 503  # honest: the replica still boots
        paths = c.get("/admin/paths").json()
        assert paths["vm"]["booting"] == 1 and paths["ready"] is False
        r = c.post("/v2/models/mlp/infer", json=body, headers={"x-tidegate-route": "vm"})
        assert r.status_code == 200, r.text
        assert r.headers["x-tidegate-path"] == "vm"
        assert c.get("/v2/health/ready").status_code == 200
        metrics = c.get("/metrics").text
        assert 'reason="vm-booting"' in metrics or 'reason="forced"' in metrics
