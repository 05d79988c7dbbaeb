"""What a VM fleet schedule chosen with hindsight costs in the simulator: an upper reference for
what any autoscaler could reach with the slo-aware routing, beside the offline bound (a lower
bound) and vm-peak. It answers "is 2x below vm-peak reachable on this trace at all, whatever
the scaler does?" without a policy in the way.

    .venv/bin/python ops/bench/fleet_oracle.py --trace T [--rate-scale X]
        [--schedule 0:1,1500:2,2280:1 ...] [--json OUT]

Each ``--schedule`` is ``t_s:replicas`` steps (the fleet asked for from t_s on; a VM asked for
serves a boot time later, as in every run). Routing is slo-aware's, the profile the reference
one, so the figures compare with `tidegate simulate --policy slo-aware` on the same trace.
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
from ops.sim.engine import Simulation  # noqa: E402
from ops.sim.presets import build_policies, preset_spec  # noqa: E402
from ops.sim.setup import SimSetup  # noqa: E402
from ops.sim.config import load_config  # noqa: E402
from ops.traces import read_trace  # noqa: E402
from policies.autoscaling.base import ScaleDecision, ScalerBase  # noqa: E402
from policies.costs import PriceTable  # noqa: E402


class Scheduled(ScalerBase):
    """The fleet a schedule names at each moment, nothing else."""

    name = "scheduled"

    def __init__(self, steps: list[tuple[float, int]]):
        super().__init__(0, max(k for _, k in steps) or 1)
        self.steps = sorted(steps)

    def decide(self, state) -> ScaleDecision:
        want = 0
        for t_s, replicas in self.steps:
            if state.now_s >= t_s:
                want = replicas
        return ScaleDecision(want, "schedule")


def parse_schedule(text: str) -> list[tuple[float, int]]:
    steps = []
    for part in text.split(","):
        t_s, _, k = part.partition(":")
        steps.append((float(t_s), int(k)))
    return steps


def run_schedule(trace, profile, prices, steps) -> dict:
    spec = preset_spec("slo-aware", trace, profile)
    routing, _ = build_policies(spec, prices)
    setup = SimSetup(
        profile=profile,
        routing=routing,
        autoscaler=Scheduled(steps),
        prices=prices,
        initial_replicas=steps[0][1] if steps[0][0] <= 0 else 0,
        name="schedule",
    )
    return Simulation(trace, setup).run().summary


KEYS = ("slo_attainment", "cost_usd", "vm_usd", "vm_hours", "spill_ratio", "cold_starts")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True)
    ap.add_argument("--rate-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--schedule", action="append", default=[])
    ap.add_argument("--json", dest="json_out")
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
    for text in args.schedule or ["0:1"]:
        rows[f"schedule {text}"] = run_schedule(trace, profile, prices, parse_schedule(text))
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
