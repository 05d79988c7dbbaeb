"""``PUT /admin/policy`` switching to threshold runs (and shows) the configured parameters, as a
gateway started on threshold does: it showed ``routing_params: {}`` and ran the built-in 16
whatever ``spill_outstanding_per_replica`` said."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app


def _gateway(tmp_path, small_repo, model_server, routing_policy: str):
    settings = Settings.load(
        None,
        data_dir=tmp_path,
        repo=small_repo,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        routing_policy=routing_policy,
        spill_outstanding_per_replica=5,
    )
    return create_app(settings)


def _running(app) -> int:
    return app.state.gateway.dispatcher.policy.spill_outstanding_per_replica


@pytest.mark.parametrize("start", ["vm-only", "slo-aware"])
def test_switching_to_threshold_runs_the_configured_parameters(
    start, model_server, small_repo, tmp_path
):
    started = _gateway(tmp_path / "t", small_repo, model_server, "threshold")
    with serve_app(started) as url:
        want = httpx.get(url + "/admin/policy").json()["routing_params"]
        assert want == {"spill_outstanding_per_replica": 5} and _running(started) == 5
    switched = _gateway(tmp_path / "s", small_repo, model_server, start)
    with serve_app(switched) as url, httpx.Client(base_url=url, timeout=30) as c:
        put = c.put("/admin/policy", json={"routing_policy": "threshold"})
        assert put.status_code == 200 and put.json()["routing_params"] == want
        assert c.get("/admin/policy").json()["routing_params"] == want
        assert _running(switched) == 5
        # a parameter given goes over the configured ones; away and back: configured again
        put = c.put(
            "/admin/policy",
            json={
                "routing_policy": "threshold",
                "routing_params": {"spill_outstanding_per_replica": 3},
            },
        )
        assert put.json()["routing_params"] == {"spill_outstanding_per_replica": 3}
        assert _running(switched) == 3
        assert c.put("/admin/policy", json={"routing_policy": start}).json()["routing_params"] == {}
        assert (
            c.put("/admin/policy", json={"routing_policy": "threshold"}).json()["routing_params"]
            == want
        )
        assert _running(switched) == 5
