"""``tidegate profile`` reads its legs against the single-thread time the model prices them at:
under "graph" split pricing what every leg computes whole plus its share of the rest, so the
fitted per-node time does not count the tiles' whole part a second time."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from burst.plan import Split
from burst.report import MasterReport, StageReport
from ops.profile_legs import stage_observations


def _observe(unshared=None) -> dict:
    plan = SimpleNamespace(
        stages=[
            SimpleNamespace(
                split=Split.SPATIAL,
                workers=2,
                nodes=["a", "b"],
                macs=10,
                leg_macs=[6, 6],
                packed=True,
            )
        ]
    )
    stage = StageReport(
        index=0,
        split="spatial",
        workers=2,
        wall_ms=20.0,
        compute_ms=16.0,
        worker_compute_ms=[16.0, 16.0],
        own_start_ms=0.0,
        send_ms=0.0,
    )
    answer = SimpleNamespace(report=MasterReport("p", "r", 20.0, 16.0, 4.0, [stage]))
    (obs,) = stage_observations({"a": 10.0, "b": 10.0}, plan, [answer], unshared)
    return obs


def test_legs_single_thread_time_takes_the_whole_part():
    calls = []

    def unshared(nodes, split, packed):
        calls.append((tuple(nodes), split, packed))
        return 5.0

    # 5 ms whole, then 60 % of the other 15 (halos included)
    assert _observe(unshared)["leg_single_ms"] == pytest.approx([14.0, 14.0])
    assert calls == [(("a", "b"), "spatial", True)]
    # share pricing (profiles before it): 60 % of the stage's 20 ms
    assert _observe()["leg_single_ms"] == pytest.approx([12.0, 12.0])
