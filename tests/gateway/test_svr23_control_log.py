"""The control loop's optional record (``TIDEGATE_CONTROL_LOG``): one line per tick with what the
autoscaler read and decided, enough to replay its decisions through a fresh scaler."""

from __future__ import annotations

import asyncio
import logging

from gateway.control_log import ENV, ControlLog, read_records
from gateway.policy_settings import TargetScaling
from gateway.settings import Settings
from ops.bench.sim_vs_real_ticks import replay, state_of
from policies.autoscaling.simple import TargetTracking
from policies.state import ManualClock
from tests.gateway.test_control import X, _engine, _until

SCALING = TargetScaling(
    policy="target",
    target_in_flight_per_replica=2,
    metric_window_s=3,
    scale_in_cooldown_s=2,
    min_replicas=1,
    max_replicas=4,
)


async def test_each_tick_is_recorded_and_replays_to_the_same_decisions(tmp_path):
    clock = ManualClock()
    engine, pool, prov, client = _engine(SCALING, clock)
    path = tmp_path / "control.jsonl"
    engine.control_log = ControlLog(path)
    clock.advance(1)
    await engine.tick()
    prov.boot_all()
    client.gate.clear()  # requests now wait at the replica: in flight
    running = [asyncio.ensure_future(pool.infer("m", X)) for _ in range(6)]
    await _until(lambda: pool.outstanding == 6)
    decisions = []
    for _ in range(3):
        clock.advance(1)
        decisions.append((await engine.tick()).replicas)
    client.gate.set()
    await asyncio.gather(*running)
    for _ in range(6):
        clock.advance(1)
        decisions.append((await engine.tick()).replicas)
    await engine.close()

    records = read_records(path)
    assert [r["replicas"] for r in records] == [1, *decisions]
    assert max(decisions) > 1 and decisions[-1] < max(decisions)  # out, then back in
    busy = records[1]
    assert busy["vm_outstanding"] == 6 and busy["per_replica"] == [6]
    assert busy["burst_in_flight"] == 0 and busy["now_s"] == 2.0
    assert "scale out" in busy["reason"]
    # the record holds what the scaler reads: a fresh one decides the same on every tick
    fresh = TargetTracking(2, metric_window_s=3, scale_in_cooldown_s=2, min_replicas=1)
    assert replay(records, fresh) == []
    # ... and a scaler of another target does not (the replay can tell them apart)
    other = TargetTracking(10, metric_window_s=3, scale_in_cooldown_s=2, min_replicas=1)
    assert replay(records, other) != []
    assert state_of(busy).vm.outstanding == 6


def test_off_unless_asked_and_an_unwritable_path_is_said(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(ENV, raising=False)
    assert ControlLog.from_env() is None
    monkeypatch.setenv(ENV, str(tmp_path / "no-such-dir" / "control.jsonl"))
    with caplog.at_level(logging.ERROR, logger="tidegate.control"):
        assert ControlLog.from_env() is None
    assert ENV in caplog.text and "cannot write" in caplog.text
    monkeypatch.setenv(ENV, str(tmp_path / "control.jsonl"))
    got = ControlLog.from_env()
    assert got is not None and got.path == tmp_path / "control.jsonl"
    got.close()
    # the gateway starts with it set: it is not taken for a misspelt TIDEGATE_* setting
    Settings.load(None)
