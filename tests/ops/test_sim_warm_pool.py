"""The learnt warm pool in the simulator: a second burst onset after more than the platform's
keep-alive (600 s) finds the instances the first burst's spill kept busy still warm, kept
alive by pings that are billed as invocations (reference profile: 145 rows/s per VM, SLO
300 ms, cold start 900 ms)."""

import numpy as np
import pytest

from ops.sim import load_sim_profile, simulate
from ops.traces import read_trace

BURSTS_S = (300.0, 1200.0)  # 900 s apart: past the keep-alive


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    rng = np.random.default_rng(5)
    parts = [np.sort(rng.uniform(0.0, 1500.0, 30 * 1500))]  # 30 req/s
    for start in BURSTS_S:  # 390 req/s for 20 s on top: a sharp onset, shorter than a boot
        parts.append(np.sort(rng.uniform(start, start + 20.0, 360 * 20)))
    sent = np.sort(np.concatenate(parts))
    path = tmp_path_factory.mktemp("warm") / "two_bursts.csv"
    path.write_text("timestamp_s,model\n" + "".join(f"{t:.6f},m\n" for t in sent))
    trace = read_trace(str(path))
    profile = load_sim_profile(None, None).with_overrides(model=trace.models[0])
    with_pool = simulate(trace, "slo-aware", profile)
    without = simulate(trace, "slo-aware", profile, params={"autoscaling.warm_pool_horizon_s": 0})
    return trace.arrivals_s, with_pool, without, profile.slo_ms


def _onset_misses(sent_s, result, slo_ms, start_s):
    at_onset = (sent_s >= start_s) & (sent_s < start_s + 2.0)
    return int(np.count_nonzero(result.latency_ms[at_onset] > slo_ms))


def test_the_second_onset_finds_the_first_bursts_instances_warm(runs):
    sent_s, with_pool, without, slo_ms = runs
    second = BURSTS_S[1]
    # without the pool the instances were reclaimed: the onset starts them cold and misses
    assert _onset_misses(sent_s, without, slo_ms, second) > 100
    assert _onset_misses(sent_s, with_pool, slo_ms, second) < 10
    # the first onset has no history either way
    assert _onset_misses(sent_s, with_pool, slo_ms, BURSTS_S[0]) > 100
    assert with_pool.summary["slo_attainment"] > without.summary["slo_attainment"]
    assert with_pool.summary["cold_starts"] < without.summary["cold_starts"] / 1.5


def test_the_pings_are_billed_and_cost_less_than_the_cold_starts_they_save(runs):
    _, with_pool, without, _ = runs
    warm_usd = with_pool.summary["warm_functions_usd"]
    assert warm_usd > 0.0  # pings: invocations billed a warm run each
    assert without.summary["warm_functions_usd"] == 0.0
    assert with_pool.summary["cost_usd"] < without.summary["cost_usd"]
