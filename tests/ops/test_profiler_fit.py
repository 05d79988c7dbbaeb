"""The profiler's leg fit: slowdown and per-node time recovered from measured legs."""

from __future__ import annotations

import pytest

from ops.profile_legs import slowdowns


def _obs(
    single_ms: list[float], nodes: int, slow: float, per_node_ms: float, per_leg_ms: float = 0.0
) -> dict:
    return {
        "split": "spatial",
        "workers": 2,
        "nodes": nodes,
        "wall_ms": 0.0,
        "single_ms": sum(single_ms) * 2,
        "leg_single_ms": single_ms,
        "legs_ms": [slow * s + per_node_ms * nodes + per_leg_ms for s in single_ms],
    }


def test_fit_separates_slowdown_from_per_node_time():
    obs = [
        _obs([40.0, 42.0], 30, 1.2, 0.1),  # big convolutions: mostly work
        _obs([2.0, 2.5], 60, 1.2, 0.1),  # many tiny nodes: mostly per-node time
        _obs([10.0, 11.0], 10, 1.2, 0.1),
        {"split": "serial", "workers": 0, "wall_ms": 13.0, "single_ms": 10.0, "legs_ms": [13.0]},
    ]
    slow, per_node, _ = slowdowns(obs)
    assert slow["spatial"][2] == pytest.approx(1.2, rel=1e-6)
    assert per_node["spatial"][2] == pytest.approx(0.1, rel=1e-6)
    assert slow["serial"][1] == pytest.approx(1.3)


def test_too_few_legs_fall_back_to_one_ratio():
    slow, per_node, _ = slowdowns([_obs([10.0, 10.0], 5, 1.5, 0.0)])
    assert slow["spatial"][2] == pytest.approx(1.5)
    assert per_node["spatial"][2] == 0.0


def test_the_masters_own_legs_are_fitted_apart():
    """Leg 0 runs on the master (no hand-off, here faster per MAC than a worker's): one fit
    over both would overcharge the master and hide the workers' extra time."""
    obs = [_obs([40.0, 42.0], 30, 1.3, 0.1), _obs([10.0, 11.0], 10, 1.3, 0.1)]
    obs.append(_obs([20.0, 20.0], 20, 1.3, 0.1))
    for o in obs:  # the master's leg: 1.05x its share, no per-node time
        o["legs_ms"][0] = 1.05 * o["leg_single_ms"][0]
    slow, per_node, _ = slowdowns(obs)
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
    from ops.profile_legs import stage_observations

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


def test_legs_are_read_against_node_times_from_their_own_window():
    """The node times at the profile's start are a minute before the legs, and the host's pace
    moves 10-15 % in between: the profile takes the times measured between the plans'
    requests (plain convs scaled alike), so a slower window is not read as slower legs."""
    from types import SimpleNamespace

    from burst.planning import load_profile
    from ops.profile_calibrate import PlanRuns
    from ops.profile_drift import window_times
    from policies.profile import ModelTimes

    start = ModelTimes((1, 3), {"conv": 10.0, "fc": 5.0}, plain_node_ms={"conv": 12.0})
    profile = load_profile().with_model("m", start)
    graph = SimpleNamespace(model="m")
    said: list[str] = []
    runs = PlanRuns([], [], {"conv": 11.0, "fc": 6.0})
    times = window_times(profile, graph, runs, said.append).models["m"]
    assert times.node_ms == {"conv": 11.0, "fc": 6.0}
    assert times.plain_node_ms["conv"] == pytest.approx(13.2)
    assert "17.0 ms per sample (at the start 15.0)" in said[0]
    # no passes taken (or another model's): the start's times stay
    assert window_times(profile, graph, PlanRuns([], []), said.append) is profile


def test_a_leg_is_never_fitted_faster_than_one_thread_alone():
    """Against node times from the same minutes a leg sharing the cores is no faster than
    alone: a fit below 1.0x traded slowdown for per-node time on noisy legs (VGG-11's
    master 0.83x + 2.5 ms/node) and is refitted at 1.0x."""
    obs = [_obs([40.0, 42.0], 30, 0.85, 2.0), _obs([10.0, 11.0], 10, 0.85, 2.0)]
    obs.append(_obs([20.0, 20.0], 20, 0.85, 2.0))
    slow, per_node, _ = slowdowns(obs)
    assert slow["spatial"][2] == 1.0
    assert 0.0 < per_node["spatial"][2] < 2.0


def _stages(slow: float, per_node_ms: float, per_leg_ms: float) -> list[dict]:
    """Split stages as a plan has them: a few big, many small, of 1 to 5 nodes."""
    shapes = [([40.0, 42.0], 5), ([25.0, 25.0], 5), ([9.0, 9.5], 3), ([2.0, 2.5], 2)]
    shapes += [([16.0, 16.0], 2), ([0.1, 0.1], 2), ([9.0, 9.0], 3), ([1.8, 1.8], 3)]
    return [_obs(s, n, slow, per_node_ms, per_leg_ms) for s, n in shapes]


def test_a_legs_fixed_start_is_fitted_apart_from_its_per_node_time():
    """Every leg pays a fixed start (the master's: 1-1.5 ms after its sends, once its remote
    requests are out) whatever its nodes: with only a per-node term to carry it, that term
    swung between profiles (VGG-11 0.44-2.3 ms/node) and priced 5-node stages as dear as
    many small ones. Three terms recover each."""
    slow, per_node, per_leg = slowdowns(_stages(1.3, 0.2, 1.4))
    assert slow["spatial"][2] == pytest.approx(1.3, rel=1e-6)
    assert per_node["spatial"][2] == pytest.approx(0.2, abs=1e-6)
    assert per_leg["spatial"][2] == pytest.approx(1.4, abs=1e-6)
    # a stage of 5 nodes and one of 2 are charged their own fixed time, not 2.5x it
    no_start = slowdowns(_stages(1.3, 0.2, 0.0))
    assert no_start[2]["spatial"][2] == pytest.approx(0.0, abs=1e-6)


def test_no_leg_term_is_fitted_negative():
    """Noisy legs where a free fit would give a negative per-leg time (and a per-node time
    too high to make up for it) are fitted with that term at zero."""
    obs = _stages(1.2, 0.6, 0.0)
    for o in obs:  # the small stages ran a little faster than their share: noise
        if sum(o["leg_single_ms"]) < 5:
            o["legs_ms"] = [m * 0.5 for m in o["legs_ms"]]
    slow, per_node, per_leg = slowdowns(obs)
    assert per_leg["spatial"][2] >= 0.0 and per_node["spatial"][2] >= 0.0
    assert slow["spatial"][2] >= 1.0


def test_few_legs_keep_two_terms():
    """Three terms on fewer than six legs would fit their noise: no per-leg time then."""
    obs = [_obs([40.0, 42.0], 30, 1.2, 0.1, 2.0), _obs([10.0, 11.0], 10, 1.2, 0.1, 2.0)]
    _, _, per_leg = slowdowns(obs[:1] + [_obs([20.0, 20.0], 20, 1.2, 0.1, 2.0)])
    assert per_leg["spatial"][2] == 0.0


class _ClockedStore:
    """A store whose writes take ``0.2 + 0.5 ms/MB`` on a fake clock: each size's first
    write 2 ms/MB more (its pages fault in), and every fifth 3x (the host's stray slow write)."""

    def __init__(self, spell: range = range(0)) -> None:
        self.now_s, self.puts, self.seen, self.data = 0.0, 0, set(), {}
        self.spell = spell  # puts (counted from 1) in a slow spell of the host: 3x

    def perf_counter(self) -> float:
        return self.now_s

    async def put(self, key: str, data: bytes) -> None:
        self.puts += 1
        ms = 0.2 + 0.5 * len(data) / 1e6
        if len(data) not in self.seen:
            self.seen.add(len(data))
            ms += 2.0 * len(data) / 1e6
        elif self.puts % 5 == 0 or self.puts in self.spell:
            ms *= 3
        self.now_s += ms / 1000.0
        self.data[key] = data

    async def get(self, key: str) -> bytes:
        return self.data[key]

    async def delete_prefix(self, prefix: str) -> None:
        self.data.clear()


def test_a_transfer_fit_is_not_moved_by_first_writes_or_stray_slow_ones(monkeypatch):
    """One line through every sample swung 0.7-3.2 ms/MB between profiles minutes apart (an
    8 MB round trip took 3.9-15.7 ms in one run): the fit takes each size's median after an
    untimed first write, so neither page faults nor a stray slow write set the slope."""
    import asyncio
    from types import SimpleNamespace

    from ops import profiler

    store = _ClockedStore()
    monkeypatch.setattr(profiler, "time", SimpleNamespace(perf_counter=store.perf_counter))
    sizes = [16 << 10, 256 << 10, 2 << 20, 8 << 20]
    fixed, per_mb = asyncio.run(profiler.transfer_fit(store, False, sizes, 3))
    assert per_mb == pytest.approx(0.5, rel=0.02)
    assert fixed == pytest.approx(0.2, abs=0.05)


def test_a_slow_spell_does_not_set_the_transfer_slope(monkeypatch):
    """A slow spell of the host lasting a few round trips: with each size's round trips
    taken back to back it fell on the largest size's and tilted the line; the sizes take
    turns, so it costs each size one or two of its seven."""
    import asyncio
    from types import SimpleNamespace

    from ops import profiler

    store = _ClockedStore(spell=range(26, 33))  # the last 7 of 32 writes
    monkeypatch.setattr(profiler, "time", SimpleNamespace(perf_counter=store.perf_counter))
    sizes = [16 << 10, 256 << 10, 2 << 20, 8 << 20]
    _, per_mb = asyncio.run(profiler.transfer_fit(store, False, sizes, 3))
    assert per_mb == pytest.approx(0.5, rel=0.02)


def test_legs_of_almost_no_work_charge_their_time_per_leg_not_as_a_slowdown():
    """A small model's output legs: 0.001 ms of one-thread work each, measured 0.34 ms. Their
    ratio (340x) was the slowdown the planner applied to the model's big stages."""
    tiny = [_obs([0.001, 0.001], 3, 1.0, 0.0, per_leg_ms=0.34) for _ in range(2)]
    slow, per_node, per_leg = slowdowns(tiny)
    assert slow["spatial"][2] == 1.0 and per_node["spatial"][2] == 0.0
    assert per_leg["spatial"][2] == pytest.approx(0.34, abs=1e-3)
    assert slow["spatial/master"][2] == 1.0  # the master's leg alike
    big = [_obs([40.0, 42.0], 30, 1.2, 0.0), _obs([10.0, 11.0], 10, 1.2, 0.0)]
    assert slowdowns(big)[0]["spatial"][2] == pytest.approx(1.2)  # legs of work: as before
