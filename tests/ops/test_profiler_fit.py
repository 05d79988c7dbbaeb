"""The profiler's leg fit: slowdown and per-node time recovered from measured legs."""

from __future__ import annotations

import pytest

from ops.profiler import slowdowns


def _obs(single_ms: list[float], nodes: int, slow: float, per_node_ms: float) -> dict:
    return {
        "split": "spatial",
        "workers": 2,
        "nodes": nodes,
        "wall_ms": 0.0,
        "single_ms": sum(single_ms) * 2,
        "leg_single_ms": single_ms,
        "legs_ms": [slow * s + per_node_ms * nodes for s in single_ms],
    }


def test_fit_separates_slowdown_from_per_node_time():
    obs = [
        _obs([40.0, 42.0], 30, 1.2, 0.1),  # big convolutions: mostly work
        _obs([2.0, 2.5], 60, 1.2, 0.1),  # many tiny nodes: mostly per-node time
        _obs([10.0, 11.0], 10, 1.2, 0.1),
        {"split": "serial", "workers": 0, "wall_ms": 13.0, "single_ms": 10.0, "legs_ms": [13.0]},
    ]
    slow, per_node = slowdowns(obs)
    assert slow["spatial"][2] == pytest.approx(1.2, rel=1e-6)
    assert per_node["spatial"][2] == pytest.approx(0.1, rel=1e-6)
    assert slow["serial"][1] == pytest.approx(1.3)


def test_too_few_legs_fall_back_to_one_ratio():
    slow, per_node = slowdowns([_obs([10.0, 10.0], 5, 1.5, 0.0)])
    assert slow["spatial"][2] == pytest.approx(1.5)
    assert per_node["spatial"][2] == 0.0


def test_the_masters_own_legs_are_fitted_apart():
    """Leg 0 runs on the master (no hand-off, here faster per MAC than a worker's): one fit
    over both would overcharge the master and hide the workers' extra time."""
    obs = [_obs([40.0, 42.0], 30, 1.3, 0.1), _obs([10.0, 11.0], 10, 1.3, 0.1)]
    obs.append(_obs([20.0, 20.0], 20, 1.3, 0.1))
    for o in obs:  # the master's leg: 1.05x its share, no per-node time
        o["legs_ms"][0] = 1.05 * o["leg_single_ms"][0]
    slow, per_node = slowdowns(obs)
    assert slow["spatial/master"][2] == pytest.approx(1.05)
    assert slow["spatial"][2] == pytest.approx(1.3, rel=1e-6)
    assert per_node["spatial"][2] == pytest.approx(0.1, rel=1e-6)


def test_the_masters_leg_counts_from_when_its_requests_are_out():
    """The stage waits on the master's leg from its start: after its sends, the master waits
    1-1.5 ms for its remote requests to go out before it computes. A fit of its compute alone
    made the planner give it rows it then finished last with (VGG-11, every split stage)."""
    from types import SimpleNamespace

    from burst.plan import Split
    from burst.report import MasterReport, StageReport
    from ops.profiler import stage_observations

    plan = SimpleNamespace(
        stages=[
            SimpleNamespace(
                split=Split.SPATIAL, workers=2, nodes=["a", "b"], macs=10, leg_macs=[6, 4]
            )
        ]
    )
    stage = StageReport(
        index=0,
        split="spatial",
        workers=2,
        wall_ms=40.0,
        compute_ms=30.0,
        worker_compute_ms=[30.0, 20.0],
        own_start_ms=3.5,
        send_ms=2.0,
    )
    answer = SimpleNamespace(report=MasterReport("p", "r", 40.0, 30.0, 10.0, [stage]))
    (obs,) = stage_observations({"a": 10.0, "b": 10.0}, plan, [answer])
    assert obs["legs_ms"] == [31.5, 20.0]  # the remote leg's hand-offs are its round trip's
