"""What any online policy can attain on a burst after hours without a request (rand4 s22, s23;
session 23): a bound, not a simulation.

A policy that sees nothing for hours cannot tell the burst is coming; the VMs it has up when
the burst starts are the VMs it held through the silence, and a VM asked for at the burst's
start serves ``vm_boot_s`` later. Until then the VMs held (``k``, each at most the rate it
serves within the SLO, ``start_capacity_per_s``) take what they can and functions the rest;
a function misses with at least the probability its warm latency (the profile's lognormal)
exceeds the SLO less the gateway's time. Cold starts, queueing and the gateway's margin only
add misses. For each ``k``: the fewest misses that implies, the best attainment, and what
holding ``k`` VMs through the silence bills (against vm-peak's whole run).

    .venv/bin/python ops/bench/heldout23_bound.py [--only ' s22']
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ops.bench import heldout_rand4  # noqa: E402
from ops.sim.presets import start_capacity_per_s  # noqa: E402
from policies.autoscaling.base import GATEWAY_MS  # noqa: E402
from policies.costs import PriceTable  # noqa: E402


def burst_window(arrivals: np.ndarray) -> tuple[float, float]:
    """(the silence's length, the burst's start): the longest gap between arrivals, and the
    first arrival after it from which a second holds over half the busiest second's count."""
    gaps = np.diff(arrivals)
    g = int(np.argmax(gaps))
    after = arrivals[g + 1 :]
    per_s = np.searchsorted(after, after + 1.0) - np.arange(after.size)
    start = float(after[int(np.argmax(per_s >= per_s.max() / 2))])
    return float(gaps[g]), start


def bound_rows(run, csv_dir: Path, max_k: int = 6) -> list[dict]:
    trace = heldout_rand4.build_trace(run, csv_dir)
    ((model, slo_ms),) = run.models().items()
    p = heldout_rand4.model_profile(model, slo_ms)
    arr = trace.arrivals_s
    silence_s, start = burst_window(arr)
    boot_s, n = p.vm_boot_s, arr.size
    end = start + boot_s
    first = arr[(arr >= start) & (arr < end)]
    span_s = max(min(boot_s, float(first[-1] - start)) if first.size else 0.0, 1e-9)
    z = math.log((slo_ms - GATEWAY_MS) / p.burst_p50_ms) / p.burst_sigma
    fn_miss = 1.0 - NormalDist().cdf(z)
    cap, usd_s = start_capacity_per_s(p), PriceTable().vm_usd_per_hour / 3600.0
    rows = []
    for k in range(max_k + 1):
        spilled = max(first.size - k * cap * span_s, 0.0)
        misses = spilled * fn_miss
        rows.append(
            {
                "k": k,
                "requests": n,
                "in_boot": int(first.size),
                "fn_miss": fn_miss,
                "min_misses": misses,
                "best_attainment": 1.0 - misses / n,
                "hold_usd": k * silence_s * usd_s,
                "silence_s": silence_s,
            }
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[" s22", " s23"])
    ap.add_argument("--csv-dir", default=str(ROOT / "ops/bench/results/heldout_rand4"))
    args = ap.parse_args()
    for run in heldout_rand4.rand4():
        if not any(o in run.name for o in args.only):
            continue
        rows = bound_rows(run, Path(args.csv_dir))
        r0 = rows[0]
        print(
            f"{run.name}: {r0['requests']} requests, silence {r0['silence_s'] / 3600:.2f} h, "
            f"{r0['in_boot']} in the burst's first boot time, a warm function misses "
            f"{100 * r0['fn_miss']:.1f} %"
        )
        for r in rows:
            print(
                f"  {r['k']} VMs held: >= {r['min_misses']:7.1f} misses, attainment <= "
                f"{100 * r['best_attainment']:6.2f} %, holding them through the silence "
                f"${r['hold_usd']:.4f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
