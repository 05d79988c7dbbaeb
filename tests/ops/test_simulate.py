"""The simulator in simulated time: VM boot and billing, batching, cold/warm functions, the
optimum as a lower bound, and ``tidegate simulate`` as a user runs it."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest

from ops.cli import main
from ops.sim import SimProfile, simulate
from ops.sim.optimum import solve_layers
from ops.traces import Trace, read_trace

PROFILE = SimProfile.reference()


def _trace(arrivals, tenants=None) -> Trace:
    t = np.asarray(arrivals, dtype=float)
    names = sorted(set(tenants)) if tenants else ["default"]
    idx = np.array([names.index(x) for x in tenants] if tenants else np.zeros(t.size), np.int32)
    return Trace("test", t, np.zeros(t.size, np.int32), idx, ("resnet18",), tuple(names))


def test_vm_peak_bills_its_fixed_fleet_per_second_and_meets_a_light_slo():
    trace = read_trace("synth:steady:duration_s=600,rps=50")
    res = simulate(trace, "vm-peak", PROFILE).summary
    replicas = res["peak_vm_replicas"]
    assert res["requests_vm"] == len(trace) and res["rejected"] == 0
    assert res["slo_attainment"] == 1.0 and res["p99_ms"] < PROFILE.slo_ms
    up_s = res["vm_hours"] * 3600
    assert up_s == pytest.approx(replicas * res["duration_s"], rel=0.01)
    assert res["vm_usd"] == pytest.approx(up_s * 0.17 / 3600, rel=1e-9)
    assert res["cost_usd"] == pytest.approx(res["vm_usd"])


def test_batches_form_under_load_and_not_when_idle():
    light = simulate(read_trace("synth:steady:duration_s=300,rps=2"), "vm-peak", PROFILE)
    one = {"autoscaling.replicas": 1, "autoscaling.min_replicas": 1, "autoscaling.max_replicas": 1}
    heavy = simulate(
        read_trace("synth:steady:duration_s=300,rps=130"), "vm-peak", PROFILE, params=one
    )
    assert light.summary["vm_batches"] > 0.95 * light.summary["requests"]
    assert heavy.summary["vm_batches"] < 0.6 * heavy.summary["requests"]


def test_reactive_vms_miss_the_slo_while_booting_and_spill_saves_it():
    step = read_trace("synth:step:duration_s=400,base_rps=60,mult=6,start_s=100,step_s=120")
    reactive = simulate(step, "vm-reactive", PROFILE).summary
    spill = simulate(step, "threshold", PROFILE).summary
    assert reactive["slo_attainment"] < 0.9  # 60 s of boot with a growing queue
    assert spill["slo_attainment"] > 0.98 and spill["requests_burst"] > 0
    slow_boot = simulate(step, "vm-reactive", replace(PROFILE, vm_boot_s=120.0)).summary
    assert slow_boot["slo_attainment"] < reactive["slo_attainment"]


def test_functions_start_cold_after_keep_alive_and_warm_when_busy():
    sparse = _trace(np.arange(20) * 100.0)  # 100 s apart, keep-alive 60 s
    res = simulate(sparse, "burst-only", replace(PROFILE, fn_keep_alive_s=60.0)).summary
    assert res["cold_starts"] == 20 and res["p50_ms"] > PROFILE.cold_start_ms
    dense = simulate(
        read_trace("synth:steady:duration_s=120,rps=20"), "burst-only", PROFILE
    ).summary
    assert dense["cold_starts"] < 0.02 * dense["requests"]
    assert dense["function_gb_s"] > 0 and dense["vm_hours"] == 0
    capped = simulate(
        read_trace("synth:steady:duration_s=120,rps=20"),
        "burst-only",
        replace(PROFILE, fn_concurrency=1),
    ).summary
    assert capped["throttled"] > 0 and capped["p99_ms"] > dense["p99_ms"] * 3


def test_fork_join_plans_bill_every_instance():
    trace = read_trace("synth:steady:duration_s=60,rps=10")
    one = simulate(trace, "burst-only", PROFILE).summary
    four = simulate(
        trace,
        "burst-only",
        replace(PROFILE, burst_workers=4, burst_instances=5, burst_billed_ms=5 * 60.0),
    ).summary
    assert four["function_requests_usd"] == pytest.approx(5 * one["function_requests_usd"])
    assert four["cold_starts"] == pytest.approx(5 * one["cold_starts"], abs=5)


def _brute(demand, cap, p, f, boot, minimum):
    best = float("inf")
    for bits in itertools.product([0, 1], repeat=len(demand)):
        cost, run = 0.0, minimum + 99 if bits[0] else 0  # may start already up, as sims do
        for d, on in zip(demand, bits, strict=True):
            if on:
                cost += p * (boot if run == 0 else 0) + p
                run += 1
            else:
                cost += p * max(minimum - boot - run, 0) if run else 0
                run = 0
                cost += f * min(d, cap)
        cost += p * max(minimum - boot - run, 0) if run else 0
        best = min(best, cost)
    return best


@pytest.mark.parametrize(
    "p, f, boot, minimum", [(1.0, 0.1, 2, 4), (1.0, 0.3, 1, 3), (0.5, 0.2, 3, 6), (1.0, 0.05, 0, 1)]
)
def test_optimum_dp_is_exact_against_brute_force(p, f, boot, minimum):
    rng = np.random.default_rng(int(p * 100 + boot))
    demand = rng.choice([0.0, 2.0, 5.0], size=14)
    got = solve_layers(demand, 1.0, 5.0, p, f, boot, minimum)["cost_usd"]
    assert got == pytest.approx(_brute(demand, 5.0, p, f, boot, minimum))


def test_optimum_is_below_every_policy():
    trace = read_trace("synth:mmpp:duration_s=900,low_rps=20,high_rps=250")
    opt = simulate(trace, "optimum", PROFILE).summary["cost_usd"]
    for preset in ("vm-peak", "burst-only", "threshold", "slo-aware"):
        assert simulate(trace, preset, PROFILE).summary["cost_usd"] >= opt


def test_tenant_costs_add_up():
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 300, 6000))
    tenants = rng.choice(["a", "b", "c"], size=t.size).tolist()
    res = simulate(_trace(t, tenants), "threshold", PROFILE).summary
    assert sum(v["requests"] for v in res["tenants"].values()) == 6000
    assert sum(v["cost_usd"] for v in res["tenants"].values()) == pytest.approx(res["cost_usd"])


def test_cli_prints_every_preset_and_writes_json_and_plots(tmp_path, capsys):
    out, plot = tmp_path / "sim.json", tmp_path / "sim.html"
    rc = main(
        [
            "simulate",
            "--trace",
            "synth:flash-crowd:duration_s=600,start_s=200,base_rps=10",
            "--json",
            str(out),
            "--plot",
            str(plot),
        ]
    )
    assert rc == 0
    table = capsys.readouterr().out
    for preset in ("vm-peak", "vm-reactive", "burst-only", "threshold", "slo-aware", "optimum"):
        assert preset in table
    runs = {r["policy"]: r for r in json.loads(out.read_text())["runs"]}
    for r in runs.values():
        for key in (
            "requests",
            "slo_attainment",
            "p50_ms",
            "p99_ms",
            "cost_usd",
            "vm_hours",
            "function_gb_s",
            "cold_starts",
            "tenants",
        ):
            assert key in r
        assert r["cost_vs_optimum"] >= 1.0 - 1e-9
    page = plot.read_text()
    assert page.count("<svg") >= 2 and "<script" not in page and "http" not in page
    assert plot.with_suffix(".png").stat().st_size > 1000


def test_cli_single_policy_json_and_config_policy(tmp_path, capsys):
    cfg = tmp_path / "serve.toml"
    cfg.write_text(
        'routing_policy = "threshold"\nspill_outstanding_per_replica = 4\n'
        '[autoscaling]\npolicy = "target"\nmin_replicas = 1\nmax_replicas = 3\n'
        '[[tenants]]\nname = "default"\napi_keys = ["k"]\nslo_ms = 150\n'
    )
    out = tmp_path / "one.json"
    assert (
        main(
            [
                "simulate",
                "--trace",
                "synth:steady:duration_s=120,rps=30",
                "--policy",
                "config",
                "--config",
                str(cfg),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert doc["policy"] == "config" and doc["peak_vm_replicas"] <= 3
    assert doc["optimum_cost_usd"] <= doc["cost_usd"] and doc["requests"] > 3000
    assert "default" in doc["tenants"]


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp_s,model\nx,mlp\n")
    assert main(["simulate", "--trace", str(bad)]) == 2
    assert "bad.csv:2" in capsys.readouterr().err
    assert main(["simulate", "--trace", "synth:steady", "--policy", "cheapest"]) == 2
    assert "unknown policy" in capsys.readouterr().err
    assert main(["simulate", "--trace", "synth:steady", "--profile", str(tmp_path / "no")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert (
        main(
            [
                "simulate",
                "--trace",
                "synth:steady",
                "--policy",
                "threshold",
                "--param",
                "routing.nonsense=3",
            ]
        )
        == 2
    )
    assert "nonsense" in capsys.readouterr().err


@pytest.mark.parametrize(
    "spec",
    [
        "synth:mmpp:duration_s=900,low_rps=60,high_rps=700,mean_low_s=120,mean_high_s=20",
        "synth:flash-crowd:duration_s=900,base_rps=40,peak_mult=15,start_s=300,hold_s=60",
    ],
)
def test_route_cache_shortcuts_give_exactly_the_decisions_of_whole_snapshots(spec):
    """slo-aware decisions are reused across ticks and per queue summary (speed); every
    request must still get what keying on the whole snapshot, tick by tick, gives it."""
    from ops.sim import Simulation, SimSetup, build_policies, preset_spec
    from policies.costs import PriceTable

    trace = read_trace(spec, seed=4)
    spec_ = preset_spec("slo-aware", trace, PROFILE)
    runs = []
    for exact in (True, False):
        routing, scaler = build_policies(spec_, PriceTable())
        setup = SimSetup(
            PROFILE,
            routing,
            scaler,
            PriceTable(),
            initial_replicas=spec_.initial_replicas,
            exact_route_keys=exact,
        )
        runs.append(Simulation(trace, setup).run())
    exact, fast = runs
    assert exact.summary["peak_vm_replicas"] >= 2  # the queue summary is exercised
    assert exact.summary["requests_burst"] > 0
    np.testing.assert_array_equal(exact.latency_ms, fast.latency_ms)
    np.testing.assert_array_equal(exact.path, fast.path)
    assert exact.summary["cost_usd"] == fast.summary["cost_usd"]


def test_autoscaled_presets_start_with_the_fleet_the_first_minute_needs():
    """A trace is a window of live traffic: the run starts with VMs for its first boot time's
    load (as the optimum may), not at the scaler's minimum with a minute of misses."""
    from ops.sim.presets import preset_spec, starting_replicas

    busy = read_trace("synth:steady:duration_s=300,rps=400")
    need = starting_replicas(busy, PROFILE)
    assert need == int(np.ceil(400 / PROFILE.vm_capacity_per_s() - 0.05))
    assert preset_spec("vm-reactive", busy, PROFILE).initial_replicas == need
    assert preset_spec("burst-only", busy, PROFILE).initial_replicas == 0
    res = simulate(busy, "slo-aware", PROFILE).summary
    assert res["slo_attainment"] > 0.99 and res["spill_ratio"] < 0.01


def test_power_of_two_choices_draws_two_distinct_replicas_as_the_pool_does():
    """Pairs of requests a millisecond apart, each pair alone on two idle VMs: the second finds
    one replica busy and two distinct draws always show it the idle one (vmpool's pick samples
    two distinct replicas). Drawn with replacement, a quarter of them queued behind the first."""
    t0 = np.arange(200) * 1.0 + 0.5
    trace = _trace(np.sort(np.concatenate([t0, t0 + 0.001])))
    two = {"autoscaling.replicas": 2, "autoscaling.min_replicas": 2, "autoscaling.max_replicas": 2}
    res = simulate(trace, "vm-peak", PROFILE, params=two)
    alone_ms = PROFILE.vm_service_ms(1) * (1 + 5 * PROFILE.vm_service_cv)
    assert res.latency_ms.max() <= alone_ms + PROFILE.gateway_overhead_ms
