"""``sim_vs_real.py --models``: the gateway serves several ``delay`` models (each its own wait)
from one repository, so one VM fleet whose replicas hold them all serves the trace, whose
requests go to the models in turn by a seeded draw (``--model-split``: each model's share,
or phases: ``--phase-s`` seconds of one model's traffic at a time, the others at a trickle).
The replay is simulated twice: on the shared fleet (``tidegate simulate --fleet shared``, what
the gateway runs) and one fleet per model (``--fleet per-model``), both set beside the live run.

    .venv/bin/python ops/bench/sim_vs_real.py --models delay=20/3,delay_b=60/4 ...
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np


def parse_models(spec: str) -> dict[str, tuple[float, float]]:
    """``name=delay_ms/per_item_ms,...`` -> {name: (delay_ms, per_item_ms)}."""
    out: dict[str, tuple[float, float]] = {}
    for item in spec.split(","):
        name, eq, waits = item.strip().partition("=")
        delay, slash, per = waits.partition("/")
        if not (name and eq and slash):
            raise SystemExit(f"--models {item!r}: expected NAME=DELAY_MS/PER_ITEM_MS")
        out[name] = (float(delay), float(per))
    if len(out) < 2:
        raise SystemExit("--models: name two models or more")
    return out


def export_models(run, tidegate: list[str], repo: Path, args) -> None:
    """Each model exported as the zoo's delay model under its name (and profiled)."""
    for name, (delay_ms, per_ms) in args.model_waits.items():
        cmd = ["export", "delay", "--name", name, "--out", str(repo)]
        cmd += ["--delay-ms", f"{delay_ms:g}", "--per-item-ms", f"{per_ms:g}"]
        run(tidegate + cmd + ["--slo-ms", f"{args.slo_ms:g}"], 600, check=True)
        if not args.skip_profile:
            run(tidegate + ["profile", name, "--repo", str(repo), "--reps", "3"], 1800)


def assign_models(trace, names: list[str], seed: int, phase_s: float | None):
    """The trace's arrivals, each given to one of ``names``: uniformly at random, or with
    ``phase_s`` each model in turn takes 90 % of ``phase_s``-long phases (out of phase)."""
    from ops.traces import _build

    rng = np.random.default_rng(seed + 101)
    n = len(trace)
    if phase_s:
        turn = (trace.arrivals_s // phase_s).astype(np.int64) % len(names)
        other = rng.integers(0, len(names), n)
        pick = np.where(rng.random(n) < 0.9, turn, other)
    else:
        pick = rng.integers(0, len(names), n)
    tenants = [trace.tenants[k] for k in trace.tenant_idx]
    return _build(trace.name, trace.arrivals_s, [names[k] for k in pick], tenants, rebase=False)


def simulate_fleets(run, tidegate: list[str], work: Path, sim_cfg: Path) -> dict:
    """``tidegate simulate`` of the replay on each fleet: {fleet: its summary}."""
    out = {}
    for fleet in ("shared", "per-model"):
        path = work / f"sim_{fleet}.json"
        cmd = ["simulate", "--trace", str(work / "trace.csv"), "--policy", "config"]
        cmd += ["--config", str(sim_cfg), "--repo", str(work / "repo"), "--fleet", fleet]
        run(tidegate + cmd + ["--json", str(path)], 900, check=True, stdout=subprocess.DEVNULL)
        out[fleet] = json.loads(path.read_text())
    return out


def print_fleets(live: dict, sims: dict, cost_of) -> dict:
    """Attainment and cost, live and on each simulated fleet; the differences per fleet."""
    rows = {}
    print(f"{'':12} {'attain %':>9} {'cost $':>10} {'VM h':>7} {'spill %':>8}")
    print(
        f"{'live':12} {live['slo_attainment'] * 100:9.2f} {live['cost_usd']:10.5f} "
        f"{live.get('vm_hours', 0.0):7.4f} {live.get('spill_ratio', 0.0) * 100:8.1f}"
    )
    for fleet, sim in sims.items():
        cost = cost_of(sim)
        d_att = abs(live["slo_attainment"] - sim["slo_attainment"]) * 100
        d_cost = abs(cost - live["cost_usd"]) / max(live["cost_usd"], 1e-12) * 100
        rows[fleet] = {"cost_usd": cost, "attainment_diff_points": d_att, "cost_diff_pct": d_cost}
        print(
            f"{'sim ' + fleet:12} {sim['slo_attainment'] * 100:9.2f} {cost:10.5f} "
            f"{sim['vm_hours']:7.4f} {sim['spill_ratio'] * 100:8.1f}   "
            f"({d_att:.2f} pt, {d_cost:.1f} %)"
        )
        for name, m in sorted(sim.get("models", {}).items()):
            print(
                f"  {name:10} {m['slo_attainment'] * 100:9.2f} {m['cost_usd']:10.5f} "
                f"{m['vm_hours']:7.4f} {m['spill_ratio'] * 100:8.1f}"
            )
    return rows
