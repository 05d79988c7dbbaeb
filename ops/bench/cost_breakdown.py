"""Where a policy's cost goes, against the offline optimum: VM time by cause and function cost by
cause, for one trace (issue 10: find where slo-aware pays over the bound before pulling a lever).

    .venv/bin/python ops/bench/cost_breakdown.py --trace T [--rate-scale X] [--seed N]
        [--policy slo-aware] [--param routing.X=V ...] [--json OUT]

VM dollars split into: booting (launch to ready), busy (serving batches), idle while requests
spill (the VM had room the routing did not use), idle otherwise, and the billing minimum's pad.
Function dollars split into: spill while a VM boots, spill at a fleet that is not booting, cold
starts' extra bill (counted apart), request fees and store ops. Simulated time: run it niced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ops.bench.scaler_sweep import load, parse_params  # noqa: E402
from ops.sim import SimProfile, preset_spec, simulate, spec_simulation  # noqa: E402
from policies.costs import PriceTable  # noqa: E402


def vm_parts(sim, prices: PriceTable) -> dict:
    """VM dollars by cause, from each replica's launch, ready, stop and busy seconds, and the
    per-tick timeline (idle seconds at ticks that spilled count as idle-while-spilling)."""
    usd_s = prices.vm_usd_per_hour / 3600.0
    boot = busy = up = pad = 0.0
    for r in sim.vm.stopped:
        life = max(r.stop_s - r.launch_s, 0.0)
        boot += min(max(r.ready_s - r.launch_s, 0.0), life)
        busy += r.busy_s
        up += life
        pad += max(prices.vm_min_billed_s - life, 0.0)
    idle = max(up - boot - busy, 0.0)
    tl = sim.timeline
    ready = np.asarray(tl.vm_ready, dtype=float)
    spilled = np.asarray(tl.to_burst) > 0
    ready_s = float(ready.sum()) * sim.s.tick_s
    ready_spill_s = float(ready[spilled].sum()) * sim.s.tick_s
    # busy time is spread in proportion to ready time (close enough to split idle by cause)
    idle_spill = idle * (ready_spill_s / ready_s) if ready_s else 0.0
    return {
        "vm_boot_usd": boot * usd_s,
        "vm_busy_usd": busy * usd_s,
        "vm_idle_while_spilling_usd": idle_spill * usd_s,
        "vm_idle_usd": (idle - idle_spill) * usd_s,
        "vm_min_billing_usd": pad * usd_s,
        "vm_replicas_started": len(sim.vm.stopped),
    }


def fn_parts(sim, res: dict) -> dict:
    """Function dollars by cause: spill during a boot vs not (by tick), cold starts' extra."""
    tl = sim.timeline
    burst = np.asarray(tl.to_burst, dtype=float)
    booting = np.asarray(tl.vm_booting) > 0
    total = max(burst.sum(), 1.0)
    compute = res["function_compute_usd"] + res["warm_functions_usd"]
    p, fn = sim.p, sim.fn
    cold_gb_s = fn.cold_starts / fn.k * float(np.mean(fn.cold_billed_ms)) / 1000.0
    cold_usd = cold_gb_s * p.burst_memory_mb / 1024.0 * sim.s.prices.fn_usd_per_gb_s * fn.k
    warm_usd = max(compute - cold_usd, 0.0)
    during_boot = float(burst[booting].sum()) / total
    return {
        "fn_spill_during_boot_usd": warm_usd * during_boot,
        "fn_spill_no_boot_usd": warm_usd * (1 - during_boot),
        "fn_cold_start_usd": cold_usd,
        "fn_requests_usd": res["function_requests_usd"],
        "store_usd": res["store_usd"],
        "requests_burst": res["requests_burst"],
        "cold_starts": res["cold_starts"],
    }


def breakdown(trace, policy: str, params: dict, seed: int) -> dict:
    profile, prices = SimProfile.reference(), PriceTable()
    spec = preset_spec(policy, trace, profile, params)
    sim = spec_simulation(trace, spec, profile, prices=prices, seed=seed, name=policy)
    res = sim.run().summary
    opt = simulate(trace, "optimum", profile, prices=prices).summary
    return {
        "cost_usd": res["cost_usd"],
        "slo_attainment": res["slo_attainment"],
        "vm_usd": res["vm_usd"],
        "vm_hours": res["vm_hours"],
        **vm_parts(sim, prices),
        **fn_parts(sim, res),
        "optimum_usd": opt["cost_usd"],
        "optimum_vm_hours": opt["vm_hours"],
        "optimum_vm_usd": opt["vm_hours"] * prices.vm_usd_per_hour,
        "optimum_fn_gb_s": opt["function_gb_s"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True)
    ap.add_argument("--rate-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policy", default="slo-aware")
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    trace = load(args.trace, args.rate_scale, args.seed)
    row = breakdown(trace, args.policy, parse_params(args.param), args.seed)
    for key, value in row.items():
        print(f"{key:<28} {value:10.4f}" if isinstance(value, float) else f"{key:<28} {value:10d}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
