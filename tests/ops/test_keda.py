"""The KEDA ScaledObject for the async queue scales the real Deployment on series we export."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from gateway.asyncq.service import _gauges

K8S = Path(__file__).resolve().parents[2] / "ops/deploy/k8s"


def test_scaled_object_targets_the_pool_on_exported_queue_series():
    (scaled,) = [d for d in yaml.safe_load_all((K8S / "keda-async.yaml").read_text()) if d]
    assert scaled["kind"] == "ScaledObject" and scaled["apiVersion"].startswith("keda.sh/")
    pool = [d for d in yaml.safe_load_all((K8S / "model-server.yaml").read_text()) if d]
    deployments = {d["metadata"]["name"]: d for d in pool if d["kind"] == "Deployment"}
    target = scaled["spec"]["scaleTargetRef"]["name"]
    assert target in deployments
    assert scaled["metadata"]["namespace"] == deployments[target]["metadata"]["namespace"]
    registry = CollectorRegistry()
    depth, oldest = _gauges(registry)
    depth.labels("pending").set(3)
    oldest.set(1.5)
    exported = {
        ln.split("{")[0].split(" ")[0]
        for ln in generate_latest(registry).decode().splitlines()
        if ln and not ln.startswith("#")
    }
    queries = [
        t["metadata"]["query"] for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"
    ]
    assert queries
    for query in queries:
        names = set(re.findall(r"tidegate_[a-z_]+", query))
        assert names and names <= exported, query
