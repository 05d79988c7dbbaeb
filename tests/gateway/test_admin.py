"""``/admin/policy`` and ``/admin/paths`` over a real gateway and model server on loopback."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app


def _settings(tmp_path, small_repo, model_server, **kw):
    return Settings.load(
        None,
        data_dir=tmp_path,
        repo=small_repo,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        **kw,
    )


def _infer(client, route=None):
    x = np.zeros((1, 784), np.float32)
    body = {
        "inputs": [
            {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    headers = {"x-tidegate-route": route} if route else {}
    return client.post("/v2/models/mlp/infer", json=body, headers=headers)


@pytest.fixture(scope="module")
def open_gateway(model_server, small_repo, tmp_path_factory):
    settings = _settings(
        tmp_path_factory.mktemp("admin"), small_repo, model_server, routing_policy="vm-only"
    )
    with serve_app(create_app(settings)) as url:
        yield url


def test_loopback_without_tenants_reads_and_changes_the_policy_at_run_time(open_gateway):
    with httpx.Client(base_url=open_gateway, timeout=30) as c:
        got = c.get("/admin/policy").json()
        assert got["routing_policy"] == "vm-only" and got["autoscaling"]["policy"] == "none"
        put = c.put(
            "/admin/policy",
            json={
                "routing_policy": "slo-aware",
                "autoscaling": {
                    "policy": "target",
                    "min_replicas": 1,
                    "max_replicas": 1,
                    "target_in_flight_per_replica": 3,
                },
            },
        )
        assert put.status_code == 200, put.text
        assert put.json()["autoscaling"]["target_in_flight_per_replica"] == 3
        assert c.get("/admin/policy").json()["routing_policy"] == "slo-aware"
        assert _infer(c).status_code == 200
        metrics = c.get("/metrics").text
        assert 'tidegate_routed_requests_total{model="mlp",path="vm",reason="' in metrics
        assert 'tidegate_vm_replicas{state="desired"}' in metrics
        assert 'tidegate_predicted_latency_seconds{model="mlp",path="vm"}' in metrics
        assert 'tidegate_observed_latency_seconds{model="mlp",path="vm",percentile="99"}' in metrics
        paths = c.get("/admin/paths").json()
        assert paths["ready"] is True and paths["vm"]["ready"] == 1
        assert paths["burst"]["enabled"] is False
        assert paths["models"]["mlp"]["vm_observed_ms"]["count"] >= 1


def test_bad_policy_changes_are_refused_and_change_nothing(open_gateway):
    with httpx.Client(base_url=open_gateway, timeout=30) as c:
        before = c.get("/admin/policy").json()
        for bad in (
            {"routing_policy": "cheapest"},
            {"autoscaling": {"policy": "knative", "base_quantile": 0.5}},
            {"autoscaling": {"policy": "target", "min_replicas": 5, "max_replicas": 2}},
            {"routing_policy": "threshold", "routing_params": {"nope": 1}},
            {"surprise": 1},
            # an integer no JSON reader holds: it was applied, then its echo was a 500
            {"autoscaling": {"policy": "queue", "activation_depth": 11139550521187226353664}},
            {
                "routing_policy": "threshold",
                "routing_params": {"spill_outstanding_per_replica": 2**64},
            },
            # a string was taken, and every request then failed comparing it
            {
                "routing_policy": "threshold",
                "routing_params": {"spill_outstanding_per_replica": "8"},
            },
        ):
            r = c.put("/admin/policy", json=bad)
            assert r.status_code == 400, (bad, r.text)
            assert "error" in r.json()
        r = c.put("/admin/policy", json={"routing_policy": "slo-aware", "routing_params": {"x": 1}})
        assert r.status_code == 400
        error = r.json()["error"]  # names what it takes, not a Python TypeError
        assert "takes no parameter 'x'" in error and "slo_margin" in error
        assert "__init__" not in error
        # curl -d '{...}' without -H 'Content-Type: application/json' sends a form
        r = c.put(
            "/admin/policy",
            content=b'{"routing_policy": "threshold"}',
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 400
        assert (
            "Content-Type: application/json, not application/x-www-form-urlencoded"
            in r.json()["error"]
        )
        assert c.get("/admin/policy").json() == before


def test_with_tenants_and_no_admin_key_the_admin_api_is_off(model_server, small_repo, tmp_path):
    settings = _settings(
        tmp_path, small_repo, model_server, tenants=[{"name": "a", "api_keys": ["ka"]}]
    )
    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.get("/admin/policy", headers={"authorization": "Bearer ka"})
        assert r.status_code == 403 and "admin_api_key" in r.json()["error"]


def test_the_admin_key_is_required_when_configured(model_server, small_repo, tmp_path):
    settings = _settings(
        tmp_path,
        small_repo,
        model_server,
        admin_api_key="s3cret",
        tenants=[{"name": "a", "api_keys": ["ka"]}],
    )
    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/admin/policy").status_code == 401
        assert c.get("/admin/paths", headers={"x-api-key": "ka"}).status_code == 403
        ok = c.get("/admin/policy", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["routing_policy"] == "threshold"
        r = c.put(
            "/admin/policy", json={"routing_policy": "vm-only"}, headers={"x-api-key": "s3cret"}
        )
        assert r.status_code == 200 and r.json()["routing_policy"] == "vm-only"
