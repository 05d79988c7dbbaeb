"""The labels the Grafana dashboard and the alert rules select and group by are labels the series
carry on a live gateway: a ``sum by (tenant)`` over a series without ``tenant`` draws one line
with no name, and a ``{code="200"}`` on a series without ``code`` draws nothing, yet both pass
promtool and the series-name check (test_observability_refusals)."""

from __future__ import annotations

import json
import re

import httpx
import numpy as np
import yaml

from vmpool.codec import encode_request

from .test_observability_refusals import DEPLOY, gateway  # noqa: F401 - the live gateway

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? ", re.M)
SELECTOR = re.compile(r"\b(tidegate_[a-zA-Z0-9_]+)(?:\{([^}]*)\})?")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)\s*\(")


def _exprs() -> list[str]:
    out: list[str] = []
    stack: list = [json.loads(p.read_text()) for p in sorted(DEPLOY.rglob("*.json"))]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            out += [v for k, v in node.items() if k == "expr" and isinstance(v, str)]
            stack += node.values()
        elif isinstance(node, list):
            stack += node
    for path in sorted((DEPLOY / "prometheus").glob("tidegate-alerts.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [rule["expr"] for rule in group["rules"]]
    return out


def _inner(expr: str, open_at: int) -> str:
    """The text inside the parenthesis opening at ``open_at``."""
    depth = 0
    for i in range(open_at, len(expr)):
        depth += {"(": 1, ")": -1}.get(expr[i], 0)
        if depth == 0:
            return expr[open_at + 1 : i]
    return expr[open_at + 1 :]


def label_problems(exprs: list[str], labels_of: dict[str, set[str]]) -> list[str]:
    """Each (expression, series, label) where the label is selected or grouped by and the
    series has no such label (``le`` and Grafana's ``$__`` variables aside)."""
    problems = []
    for expr in exprs:
        for name, matchers in SELECTOR.findall(expr):
            for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
                if label not in labels_of.get(name, set()):
                    problems.append(f"{expr!r}: {name} has no label {label!r}")
        for match in GROUPING.finditer(expr):
            wanted = {w.strip() for w in match[1].split(",") if w.strip()} - {"le"}
            for name, _ in SELECTOR.findall(_inner(expr, match.end() - 1)):
                for label in sorted(wanted - labels_of.get(name, set())):
                    problems.append(f"{expr!r}: {name} has no label {label!r} to group by")
    return problems


def _live_labels(metrics: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, labels in SAMPLE.findall(metrics):
        out.setdefault(name, set()).update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', labels))
    return out


def test_the_dashboard_and_alerts_select_and_group_by_labels_the_series_carry(gateway):  # noqa: F811
    url, _ = gateway
    body, header_len = encode_request({"input": np.zeros((1, 784), np.float32)})
    with httpx.Client(base_url=url, timeout=60) as c:
        r = c.post(
            "/v2/models/mlp/infer",
            content=body,
            headers={"x-api-key": "ka", "inference-header-content-length": str(header_len)},
        )
        assert r.status_code == 200, r.text
        labels_of = _live_labels(c.get("/metrics").text)
    exprs = _exprs()
    assert len(exprs) >= 15  # the parse found the panels and the rules
    assert label_problems(exprs, labels_of) == []
    # and the check would see a wrong label: a panel summing cost by a label it lacks
    broken = ["sum by (tenant, region) (rate(tidegate_cost_usd_total[5m]))"]
    assert label_problems(broken, labels_of) == [
        f"{broken[0]!r}: tidegate_cost_usd_total has no label 'region' to group by"
    ]
    assert label_problems(['tidegate_vm_replicas{tenant="a"}'], labels_of)
