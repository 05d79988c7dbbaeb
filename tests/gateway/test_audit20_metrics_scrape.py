"""Audit 20: the Kubernetes manifests' two gateway replicas are scraped, billed and queued as one.

Before: Prometheus scraped the gateway's ClusterIP Service, so each scrape reached either of
the two replicas and every counter rate was garbage; each replica kept its own SQLite ledger on
an emptyDir (lost with the pod; ``tidegate report`` saw one pod's rows), its own tenants' budget
counters (a budget spent once per replica) and its own async queue (a 202's job on one pod, its
polls reaching either); KEDA summed the queue depth every replica exports.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from gateway.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "ops" / "deploy"


def _manifests() -> list[dict]:
    docs = []
    for name in ("gateway.yaml", "model-server.yaml"):
        docs += [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]
    return docs


def _replicas_behind(service: dict, docs: list[dict]) -> int:
    selector = service["spec"]["selector"].items()
    return sum(
        d["spec"].get("replicas", 1)
        for d in docs
        if d["kind"] == "Deployment"
        and selector <= d["spec"]["template"]["metadata"]["labels"].items()
    )


def test_every_pod_is_scraped_on_its_own():
    docs = _manifests()
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"tidegate-gateway", "tidegate-model-server"} <= set(jobs)
    for name, job in jobs.items():
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                service = services.get(target.split(":")[0].split(".")[0])
                assert service is not None, (name, target)
                assert _replicas_behind(service, docs) <= 1, f"{name} scrapes {target}: one pod"
        for sd in job.get("dns_sd_configs", []):
            for fqdn in sd["names"]:
                service, namespace = fqdn.split(".")[:2]
                found = services[service]
                assert found["metadata"]["namespace"] == namespace
                assert found["spec"].get("clusterIP") == "None", f"{fqdn}: one record per pod"
                port = {p["port"] for p in found["spec"]["ports"]}
                assert sd["port"] in port and _replicas_behind(found, docs) >= 1


def test_replicas_share_one_ledger_one_set_of_limits_and_one_queue():
    docs = _manifests()
    gateway = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "tidegate-gateway"
    )
    assert gateway["spec"]["replicas"] > 1
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["tidegate.toml"]
    table = tomllib.loads(config)
    settings = Settings.model_validate(table)  # what serve accepts
    assert settings.redis_url and settings.async_queue.backend in ("redis", "sqs")
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    ledger = env.get("TIDEGATE_LEDGER__URL")
    if "url" not in table.get("ledger", {}):
        assert ledger is not None, "each replica kept its own SQLite ledger"
        ref = ledger["valueFrom"]["secretKeyRef"]
        assert not ref.get("optional"), "a missing secret fell back to a ledger per pod"
    keda = yaml.safe_load((DEPLOY / "k8s" / "keda-async.yaml").read_text())
    depth = [
        t["metadata"]["query"]
        for t in keda["spec"]["triggers"]
        if "async_queue_depth" in t.get("metadata", {}).get("query", "")
    ]
    assert depth and all(q.startswith("max(") for q in depth), depth  # one queue, N exporters
