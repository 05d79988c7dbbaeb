"""On a shared fleet the predictive scaler is told a spill runs on the most workers any model's
plan uses, as the live gateway tells it (gateway/live.py ``_plan_workers``); it was told the
first model's, so a mix of a 1-worker and a 4-worker plan priced spills 4x lower or higher
depending on the models' order."""

from __future__ import annotations

from types import SimpleNamespace

from ops.sim.shared import SharedSimulation


def _lane(workers: int):
    fn = SimpleNamespace(
        request_ends=[],
        warm_groups=lambda: 0,
        recent_cold=0,
        cap_groups=10,
        busy=[],
        platform_slots=100,
        slots=workers,
    )
    p = SimpleNamespace(burst_workers=workers, cold_start_ms=300.0, burst_memory_mb=1024)
    return SimpleNamespace(p=p, fn=fn)


def test_the_burst_state_names_the_most_workers_of_any_models_plan():
    for order in ([1, 4], [4, 1]):
        lanes = [_lane(w) for w in order]
        sim = SimpleNamespace(lanes=lanes)
        sim._free_instances = lambda ls, k, sim=sim: SharedSimulation._free_instances(sim, ls, k)
        state = SharedSimulation._burst_state(sim, lanes)
        assert state.default_workers == 4
