"""Audit 20: the alert rules fire on series shaped as the gateway exports them, and only then.

``promtool check rules`` says the rules parse; ``promtool test rules`` on
ops/deploy/prometheus/tidegate-alerts.test.yml says what they do: a tenant burning its SLO
budget pages, a burst of misses that is over does not, refusals stay out of the spill ratio, a
replica's restart does not hide spend from the budget alert, and so on.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROM = Path(__file__).resolve().parents[2] / "ops" / "deploy" / "prometheus"
RULES, CASES = PROM / "tidegate-alerts.yml", PROM / "tidegate-alerts.test.yml"
promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool not installed")


def _test_rules(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool, "test", "rules", CASES.name],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_promtool
def test_alert_rules_pass_their_unit_tests():
    done = _test_rules(PROM)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_a_broken_threshold_fails_them(tmp_path):
    """So a pass means promtool evaluated these rules: a page at 144x instead of 14.4x fails."""
    shutil.copy(CASES, tmp_path / CASES.name)
    text = RULES.read_text()
    assert text.count("(14.4 * 0.01)") == 2
    (tmp_path / RULES.name).write_text(text.replace("(14.4 * 0.01)", "(144 * 0.01)"))
    done = _test_rules(tmp_path)
    assert done.returncode != 0
    assert "TidegateSLOFastBurn" in done.stdout + done.stderr


def test_every_alert_has_a_case_where_it_fires():
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    cases = yaml.safe_load(CASES.read_text())
    firing = {
        t["alertname"]
        for case in cases["tests"]
        for t in case.get("alert_rule_test", [])
        if t["exp_alerts"]
    }
    assert alerts and alerts <= firing, f"alerts without a firing case: {alerts - firing}"


@needs_promtool
def test_dashboard_budget_line_is_one_per_tenant_on_two_replicas(tmp_path):
    """Every gateway replica exports each budget: the panel drew one line per replica."""
    import json

    board = json.loads((PROM.parent / "grafana" / "tidegate-dashboard.json").read_text())
    panel = next(p for p in board["panels"] if "budget" in p["title"])
    expr = next(t["expr"] for t in panel["targets"] if "daily_budget" in t["expr"])
    (tmp_path / "empty.yml").write_text("groups: []\n")
    case = {
        "rule_files": ["empty.yml"],
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'tidegate_tenant_daily_budget_usd{{tenant="acme",instance="{g}"}}',
                        "values": "10x10",
                    }
                    for g in ("g1", "g2")
                ],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "5m",
                        "exp_samples": [{"labels": '{tenant="acme"}', "value": 10}],
                    }
                ],
            }
        ],
    }
    (tmp_path / "board.test.yml").write_text(yaml.safe_dump(case))
    done = subprocess.run(
        [promtool, "test", "rules", "board.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
