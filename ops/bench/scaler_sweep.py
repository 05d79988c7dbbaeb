"""slo-aware against the offline bound and vm-peak on every trace and seed the scaler is judged
on, in one table: the generalisation check for the predictive scaler (issue 10).

    .venv/bin/python ops/bench/scaler_sweep.py [--param autoscaling.X=V ...] [--only NAME ...]
        [--json OUT]

Traces: MMPP and the flash crowd of ``docs/ops.md``, seeds 0-4, and the shared Azure code,
conversation and Mooncake traces x20. Each cell is attainment / cost / optimum / vm-peak's cost
over the cost, the figures ``tidegate simulate --policy all`` prints. vm-peak and the optimum do
not depend on the scaler: ``--cache FILE`` keeps them between runs of one tree (delete it when
the simulator or the optimum changes). Simulated time: run it niced.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ops.sim import SimProfile, simulate  # noqa: E402
from ops.sim.config import load_config  # noqa: E402
from ops.traces import read_trace  # noqa: E402

MMPP = "synth:mmpp:duration_s=3600,low_rps=30,high_rps=400,mean_low_s=240,mean_high_s=15"
FLASH = (
    "synth:flash-crowd:duration_s=3600,base_rps=20,peak_mult=20,start_s=1200,ramp_s=20,"
    "hold_s=120,decay_s=300"
)
# the shared public traces: $TIDEGATE_TRACES, else ../shared/traces beside the checkout, else
# /work/shared/traces (a clone elsewhere, e.g. /tmp/x, has no ../shared)
SHARED = next(
    (
        Path(p)
        for p in (os.environ.get("TIDEGATE_TRACES"), ROOT.parent / "shared" / "traces")
        if p and Path(p).is_dir()
    ),
    Path("/work/shared/traces"),
)
TRACES = (
    [(f"mmpp s{s}", MMPP, 1.0, s) for s in range(5)]
    + [(f"flash s{s}", FLASH, 1.0, s) for s in range(5)]
    + [
        ("code x20", str(SHARED / "azure/AzureLLMInferenceTrace_code.csv"), 20.0, 0),
        ("conv x20", str(SHARED / "azure/AzureLLMInferenceTrace_conv.csv"), 20.0, 0),
        ("mooncake x20", str(SHARED / "mooncake/conversation_trace.jsonl"), 20.0, 0),
    ]
)


def load(source: str, scale: float, seed: int):
    trace = read_trace(source, "auto", load_config(None, None).mapping, seed=seed)
    return trace.scaled(rate_factor=scale, seed=seed) if scale != 1.0 else trace


def parse_params(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--policy", default="slo-aware", help="preset to judge (default slo-aware)")
    ap.add_argument("--cache", help="JSON file keeping vm-peak's and the optimum's cost")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    params = parse_params(args.param)
    cache_path = Path(args.cache) if args.cache else None
    cache = json.loads(cache_path.read_text()) if cache_path and cache_path.is_file() else {}
    profile = SimProfile.reference()
    rows = {}
    print(f"{'trace':<13} {'attain %':>8} {'cost $':>7} {'x opt':>6} {'peak/x':>6}  {'VM h':>5}")
    for name, source, scale, seed in TRACES:
        if args.only and not any(o in name for o in args.only):
            continue
        trace = load(source, scale, seed)
        if name not in cache:
            cache[name] = {
                p: simulate(trace, p, profile, seed=seed).summary["cost_usd"]
                for p in ("vm-peak", "optimum")
            }
            if cache_path:
                cache_path.write_text(json.dumps(cache, indent=1))
        s = simulate(trace, args.policy, profile, params=params, seed=seed).summary
        ref = cache[name]
        row = {
            "slo_attainment": s["slo_attainment"],
            "cost_usd": s["cost_usd"],
            "cost_vs_optimum": s["cost_usd"] / ref["optimum"],
            "vm_peak_vs_cost": ref["vm-peak"] / s["cost_usd"],
            "vm_hours": s["vm_hours"],
        }
        rows[name] = row
        print(
            f"{name:<13} {100 * row['slo_attainment']:8.2f} {row['cost_usd']:7.4f} "
            f"{row['cost_vs_optimum']:6.3f} {row['vm_peak_vs_cost']:6.2f}  {row['vm_hours']:5.2f}",
            flush=True,
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"params": params, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
