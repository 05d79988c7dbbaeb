"""A live gateway's /metrics passes ``promtool check metrics`` without a warning, and the series
docs/operations.md lists are the series it exposes, with the same types and labels."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(tidegate_[a-z_]+)` \| (counter|gauge|histogram) \|([a-z, ]*)\|", re.M)


@pytest.fixture(scope="module")
def scraped(model_server, small_repo, tmp_path_factory) -> str:
    """/metrics of a gateway (the deployment's slo-aware routing, a tenant with a budget) after
    answers and refusals, and once its control loop has exported the observed latencies."""
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("obsfix-metrics"),
        repo=small_repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        routing_policy="slo-aware",
        tenants=[{"name": "acme", "api_keys": ["ka"], "daily_budget_usd": 5.0}],
    )
    body = {
        "inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]
    }
    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as c:
        for _ in range(3):
            assert c.post("/v2/models/mlp/infer", json=body, headers={"x-api-key": "ka"}).is_success
        assert c.post("/v2/models/mlp/infer", json=body).status_code == 401
        text = c.get("/metrics").text
        assert "tidegate_observed_latency_seconds{" in text  # exported at scrape time
        return text


def _promtool() -> str:
    found = shutil.which("promtool") or shutil.which(
        "promtool", path=str(Path(sys.executable).parent)
    )
    if found is None:
        pytest.skip("promtool is not installed (make test installs it)")
    return found


def _check(text: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


def test_promtool_check_metrics_is_clean_on_a_live_gateway(scraped):
    done = _check(scraped)
    assert (done.returncode, done.stdout.strip(), done.stderr.strip()) == (0, "", ""), done
    # the check reads what it is given: the old label is flagged
    old = scraped.replace('percentile="99"', 'quantile="0.99"')
    assert old != scraped
    flagged = _check(old)
    assert flagged.returncode != 0 and "quantile" in flagged.stdout + flagged.stderr


def _documented() -> dict[str, tuple[str, set[str]]]:
    text = (ROOT / "docs" / "operations.md").read_text()
    return {
        name: (kind, {label.strip() for label in labels.split(",") if label.strip()})
        for name, kind, labels in ROW.findall(text)
    }


def _exposed(text: str) -> dict[str, tuple[str, set[str] | None]]:
    """Each family as a documented name (a counter's with ``_total``), its type and its labels
    (None when it has no sample yet)."""
    out: dict[str, tuple[str, set[str] | None]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        out[name] = (family.type, labels if family.samples else None)
    return out


def test_the_documented_series_are_the_exposed_series(scraped):
    documented, exposed = _documented(), _exposed(scraped)
    assert len(documented) >= 15, "the table in docs/operations.md was not found"
    assert set(documented) == set(exposed), (
        f"documented only: {sorted(set(documented) - set(exposed))}; "
        f"exposed only: {sorted(set(exposed) - set(documented))}"
    )
    with_samples = 0
    for name, (kind, labels) in exposed.items():
        assert documented[name][0] == kind, (name, documented[name], kind)
        if labels is not None:
            with_samples += 1
            assert documented[name][1] == labels, (name, documented[name][1], labels)
    assert with_samples >= 12  # the traffic above filled most families


def test_series_names_follow_prometheus_naming(scraped):
    for family in text_string_to_metric_families(scraped):
        name = family.name
        assert name.startswith("tidegate_"), name
        for sample in family.samples:
            assert "quantile" not in sample.labels or family.type == "summary", sample
            if family.type == "counter":
                assert sample.name == name + "_total", sample.name  # no _created companions
        if "latency" in name or "duration" in name or "age" in name or "billed" in name:
            assert name.endswith("_seconds"), name
        if "cost" in name or "budget" in name:
            assert name.endswith("_usd"), name


def test_observed_latency_is_labelled_by_percentile(scraped):
    values = {
        s.labels["percentile"]: s.value
        for f in text_string_to_metric_families(scraped)
        if f.name == "tidegate_observed_latency_seconds"
        for s in f.samples
        if s.labels["path"] == "vm"
    }
    assert set(values) == {"50", "99"}, values
    assert 0 < values["50"] <= values["99"] < 60, values
    assert np.isfinite(list(values.values())).all()
