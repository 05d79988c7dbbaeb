"""What a VM fleet schedule chosen with hindsight costs in the simulator: an upper reference for
what any autoscaler could reach with the slo-aware routing, beside the offline bound (a lower
bound) and vm-peak. It answers "is 2x below vm-peak reachable on this trace at all, whatever
the scaler does?" without a policy in the way.

    .venv/bin/python ops/bench/fleet_oracle.py --trace T [--rate-scale X]
        [--schedule 0:1,1500:2,2280:1 ...] [--hindsight] [--json OUT]

Each ``--schedule`` is ``t_s:replicas`` steps (the fleet asked for from t_s on; a VM asked for
serves a boot time later, as in every run). Routing is slo-aware's, the profile the reference
one, so the figures compare with `tidegate simulate --policy slo-aware` on the same trace.
``--hindsight`` adds the offline optimum's own VM timeline (the per-layer DP's, each VM launched a
boot ahead), the cheapest of a few planning capacities that meets the SLO: a feasible schedule
chosen with hindsight, so ``hindsight / optimum`` is the most the bound can be loose by.
Not timing-sensitive (simulated time): run it niced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ops.sim import SimProfile, simulate  # noqa: E402
from ops.sim.config import load_config  # noqa: E402
from ops.sim.optimum_schedule import best_hindsight, run_schedule  # noqa: E402
from ops.traces import read_trace  # noqa: E402
from policies.costs import PriceTable  # noqa: E402


def parse_schedule(text: str) -> list[tuple[float, int]]:
    steps = []
    for part in text.split(","):
        t_s, _, k = part.partition(":")
        steps.append((float(t_s), int(k)))
    return steps


KEYS = ("slo_attainment", "cost_usd", "vm_usd", "vm_hours", "spill_ratio", "cold_starts")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True)
    ap.add_argument("--rate-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--schedule", action="append", default=[])
    ap.add_argument("--json", dest="json_out")
    ap.add_argument(
        "--hindsight",
        action="store_true",
        help="also the optimum's own VM timeline, simulated (ops/sim/optimum_schedule.py)",
    )
    args = ap.parse_args()
    cfg = load_config(None, None)
    trace = read_trace(args.trace, "auto", cfg.mapping, seed=args.seed)
    if args.rate_scale != 1.0:
        trace = trace.scaled(rate_factor=args.rate_scale, seed=args.seed)
    profile, prices = SimProfile.reference(), PriceTable()
    rows = {
        name: simulate(trace, name, profile, seed=args.seed).summary
        for name in ("vm-peak", "slo-aware", "optimum")
    }
    for text in args.schedule or ([] if args.hindsight else ["0:1"]):
        steps = parse_schedule(text)
        rows[f"schedule {text}"] = run_schedule(trace, profile, prices, steps, args.seed)
    if args.hindsight:
        h = best_hindsight(trace, profile, prices, seed=args.seed)
        rows[f"hindsight (capacity x{h['capacity_factor']:g})"] = h
    peak_usd = rows["vm-peak"]["cost_usd"]
    print(
        f"{'run':<34} {'attain %':>8} {'cost $':>7} {'VM $':>7} {'VM h':>5} "
        f"{'spill %':>7} {'vm-peak/x':>9}"
    )
    for name, s in rows.items():
        print(
            f"{name:<34} {100 * s['slo_attainment']:8.2f} {s['cost_usd']:7.4f} "
            f"{s.get('vm_usd', float('nan')):7.4f} {s['vm_hours']:5.2f} "
            f"{100 * s['spill_ratio']:7.2f} {peak_usd / s['cost_usd']:9.2f}"
        )
    print(f"2x below vm-peak needs <= ${peak_usd / 2:.4f}")
    if args.json_out:
        out = {k: {key: s.get(key) for key in KEYS} for k, s in rows.items()}
        Path(args.json_out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
