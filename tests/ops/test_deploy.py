"""The deployment files are valid: promtool on the Prometheus files (when installed), every metric
the dashboard and alerts read exists in the gateway, manifests and Dockerfiles hang together."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from gateway.metrics import GatewayMetrics
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "ops" / "deploy"
PROMQL_FUNCS = {"sum", "rate", "increase", "max", "histogram_quantile", "by", "and", "on"}


def _gateway_series() -> set[str]:
    names = set()
    for metric in GatewayMetrics().registry.collect():
        for sample in metric.samples:
            names.add(sample.name)
        names.add(metric.name)
        if metric.type == "counter":
            names.add(metric.name + "_total")
        if metric.type == "histogram":
            names.update(metric.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def _metric_names(expr: str) -> set[str]:
    return {m for m in re.findall(r"\b(tidegate_[a-z_]+)\b", expr)}


def test_prometheus_files_pass_promtool_or_a_structural_check():
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    assert {j["job_name"] for j in config["scrape_configs"]} >= {"tidegate-gateway"}
    rules = yaml.safe_load((DEPLOY / "prometheus/tidegate-alerts.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    names = {a["alert"] for a in alerts}
    assert {
        "TidegateSLOFastBurn",
        "TidegateHighSpillRatio",
        "TidegateTenantBudgetNearlySpent",
    } <= names
    assert all("summary" in a["annotations"] and "severity" in a["labels"] for a in alerts)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed: structural checks only")
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "tidegate-alerts.yml"]):
        done = subprocess.run(
            [promtool, *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_and_dashboard_read_only_series_the_gateway_exports():
    series = _gateway_series()
    rules = yaml.safe_load((DEPLOY / "prometheus/tidegate-alerts.yml").read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((DEPLOY / "grafana/tidegate-dashboard.json").read_text())
    assert dash["uid"] and dash["title"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["targets"] and p["datasource"]["type"] == "prometheus"
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])
        exprs += [t["expr"] for t in p["targets"]]
    used = set().union(*(_metric_names(e) for e in exprs))
    missing = used - series - recorded
    assert not missing, f"series not exported by the gateway: {sorted(missing)}"
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for needed in ("spill", "slo attainment", "cost", "replicas", "code"):
        assert needed in titles


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]


def test_kubernetes_manifests_are_consistent():
    docs = _docs("model-server.yaml") + _docs("gateway.yaml")
    for d in docs:
        assert d["apiVersion"] and d["kind"] and d["metadata"]["name"]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    services = [d for d in docs if d["kind"] == "Service"]
    assert {d["metadata"]["name"] for d in deployments} == {
        "tidegate-gateway",
        "tidegate-model-server",
    }
    for d in deployments:
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for c in d["spec"]["template"]["spec"]["containers"]:
            ports = {p["name"] for p in c["ports"]}
            assert c["image"] and c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
            assert c["readinessProbe"]["httpGet"]["port"] in ports
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments]
    for s in services:
        assert any(s["spec"]["selector"].items() <= lbl.items() for lbl in pod_labels), s
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["tidegate.toml"]
    settings = Settings.model_validate(tomllib.loads(config))  # what serve would accept
    assert settings.routing_policy == "slo-aware"
    role = next(d for d in docs if d["kind"] == "Role")
    assert any("deployments/scale" in r["resources"] for r in role["rules"])


@pytest.mark.parametrize(
    "name", ["Dockerfile.gateway", "Dockerfile.model-server", "Dockerfile.function"]
)
def test_dockerfiles_copy_what_exists_and_start_tidegate(name):
    lines = [
        ln.strip()
        for ln in (DEPLOY / "docker" / name).read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    instructions = [ln.split()[0] for ln in lines]
    assert instructions[0] == "FROM"
    assert "torch==2.13.0" in " ".join(lines)  # the pinned CPU build, never a plain `torch`
    for ln in lines:
        if ln.startswith("COPY"):
            for src in ln.split()[1:-1]:
                assert (ROOT / src).exists(), f"{name}: COPY {src} does not exist"
    start = next(ln for ln in reversed(lines) if ln.split()[0] in ("CMD", "ENTRYPOINT"))
    assert ("tidegate" in start) or ("burst.runtime" in start)
