"""The autoscaling benchmark's own logic, without running it: its configs load as the gateway
would load them, and its accounting says where the step's misses come from (path, routing
reason from the ledger, cold start, when in the step)."""

from __future__ import annotations

import sqlite3

from gateway.settings import Settings
from ops.bench.autoscale_e2e import SCENARIOS, Shape, write_config
from ops.bench.autoscale_load import Record
from ops.bench.autoscale_report import ledger_reasons, step_misses


def test_every_pair_has_a_config_the_gateway_accepts(tmp_path):
    for name, (routing, scaling) in SCENARIOS.items():
        path = tmp_path / f"{name}.toml"
        write_config(path, routing, scaling, Shape())
        settings = Settings.load(path)
        assert settings.routing_policy == routing
        assert settings.autoscaling.policy == scaling["policy"]


def test_step_misses_name_the_path_reason_cold_start_and_time(tmp_path):
    shape = Shape()  # step from 60 s to 120 s, SLO 7.2 s
    slow, fast = shape.slo_ms + 1, shape.slo_ms - 1
    recs = [
        Record(10.0, slow, 200, "vm", 0.0, request_id="before"),  # before the step: not counted
        Record(61.0, slow, 200, "burst", 0.0, request_id="a", cold_starts=1),
        Record(62.0, slow, 200, "vm", 0.0, request_id="b"),
        Record(63.0, fast, 200, "vm", 0.0, request_id="c"),  # within the SLO
        Record(71.0, 30000.0, 504, "-", 0.0, error="timeout", request_id="d"),
    ]
    ledger = tmp_path / "ledger.sqlite"
    with sqlite3.connect(ledger) as db:
        db.execute("CREATE TABLE requests (id TEXT, reason TEXT)")
        db.executemany(
            "INSERT INTO requests VALUES (?, ?)",
            [("a", "vm-saturated"), ("b", "fastest-vm"), ("c", "vm-meets-slo")],
        )
    misses = step_misses(recs, shape, ledger_reasons(ledger))
    assert misses["by_kind"] == {
        "burst vm-saturated cold": 1,
        "vm fastest-vm": 1,
        "error 504 ?": 1,  # an error has no ledger row
    }
    assert misses["by_time"] == {"0s": 2, "10s": 1}
    assert ledger_reasons(tmp_path / "none.sqlite") == {}
