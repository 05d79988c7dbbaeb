"""The async-step benchmark's own logic, without running it: its config loads as the gateway
would load it, its arrivals are 4x one replica in the step, and its accounting counts a queued
request by its recorded answer (a lost one fails its deadline)."""

from __future__ import annotations

import math

import numpy as np

from gateway.settings import Settings
from ops.bench.async_step import Sent, _tenant_row, batch_arrivals, config, web_arrivals
from ops.bench.autoscale_e2e import Shape


def test_the_config_is_one_the_gateway_accepts(tmp_path):
    path = tmp_path / "c.toml"
    config(path, "async-class", Shape(), deadline_s=300.0)
    settings = Settings.load(path)
    batch = next(t for t in settings.tenants if t.name == "batch")
    assert (batch.slo_class, batch.deadline_s) == ("async", 300.0)
    assert settings.autoscaling.policy == "queue"
    config(path, "all-interactive", Shape(), deadline_s=300.0)
    assert {t.slo_class for t in Settings.load(path).tenants} == {"interactive"}


def test_the_step_offers_four_times_one_replicas_capacity():
    shape = Shape()
    web, batch = web_arrivals(shape), batch_arrivals(shape)
    in_step = lambda t: t[(t >= shape.steady_s) & (t < shape.steady_s + shape.step_s)]  # noqa: E731
    rate = (len(in_step(web)) + len(in_step(batch))) / shape.step_s
    assert abs(rate / shape.capacity_per_s - 4.0) < 0.3
    assert len(batch) == len(in_step(batch))  # batch traffic only in the step


def test_queued_requests_count_by_their_recorded_answers():
    sent = [
        Sent("batch", 1.0, 3.0, 202, "queued", job_id="a"),
        Sent("batch", 2.0, 3.0, 202, "queued", job_id="lost"),
        Sent("batch", 3.0, 900.0, 200, "burst", 0.002),
    ]
    jobs = {"a": {"status": 200, "wait_s": 40.0, "path": "vm", "cost_usd": 1e-6}}
    row = _tenant_row(sent, jobs, lambda t: True, limit_ms=60_000.0)
    assert row["paths"] == {"queued>vm": 1, "error None": 1, "burst": 1}
    assert math.isclose(row["attainment"], 2 / 3) and row["function_usd"] == 0.002
    assert np.isclose(row["p50_ms"], (40_000 + 900) / 2)
