"""A new operator changes the policy at run time as the README shows, and gets it wrong: the
400 names the field it is about (before: "invalid request: Input should be greater than or
equal to 1", which of the fields?), and an ``[autoscaling]`` table sent without its policy
says so (before: "Unable to extract tag using discriminator 'policy'")."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app

ADMIN = {"authorization": "Bearer change-me"}


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("walkthrough-admin"),
        repo=small_repo,
        grpc_port=-1,
        admin_api_key="change-me",
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    with serve_app(create_app(settings)) as url:
        yield url


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            {"autoscaling": {"policy": "knative", "max_replicas": -4}},
            "autoscaling.knative.max_replicas: Input should be greater than or equal to 1",
        ),
        (
            {"autoscaling": {"max_replicas": 4}},
            "autoscaling: needs its 'policy' (send the whole table)",
        ),
        ({"routing_policy": "fastest"}, "routing_policy: Input should be"),
        ({"routing_polcy": "threshold"}, "routing_polcy: Extra inputs are not permitted"),
    ],
)
def test_a_bad_policy_change_names_its_field_and_changes_nothing(gateway, body, says):
    with httpx.Client(base_url=gateway, timeout=30, headers=ADMIN) as c:
        before = c.get("/admin/policy").json()
        r = c.put("/admin/policy", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"].startswith("invalid request: " + says), r.text
        assert c.get("/admin/policy").json() == before
