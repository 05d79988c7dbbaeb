"""Where a held-out run's slo-aware misses come from (session 23): per model of a rand4 run,
the misses by path (VM / functions / refused), by minute, and the fleet around them.

    .venv/bin/python ops/bench/heldout23_diag.py --only ' s22' [--param autoscaling.X=V]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ops.bench import heldout_rand4  # noqa: E402
from ops.bench.scaler_sweep import parse_params  # noqa: E402
from ops.sim import simulate  # noqa: E402

PATHS = ("vm", "burst", "refused")


def describe(run, csv_dir: Path, params, bin_s: float, top_n: int) -> None:
    trace = heldout_rand4.build_trace(run, csv_dir)
    for model, slo_ms in run.models().items():
        sub = trace.only_model(model) if len(trace.models) > 1 else trace
        p = heldout_rand4.model_profile(model, slo_ms)
        r = simulate(sub, "slo-aware", p, seed=run.seed, params=params)
        s, lat, path = r.summary, r.latency_ms, r.path
        miss = lat > slo_ms
        print(
            f"\n{run.name} / {model} slo {slo_ms} ms: {s['requests']} req, "
            f"{100 * s['slo_attainment']:.2f} %, ${s['cost_usd']:.4f}, vm_h {s['vm_hours']:.3f}, "
            f"cold {s['cold_starts']}; fn p50/p99 {p.burst_quantile_ms(0.5):.0f}/"
            f"{p.burst_quantile_ms(0.99):.0f} ms, vm b1 {p.vm_service_ms(1):.1f} ms, "
            f"cap {p.vm_capacity_per_s():.1f}/s, boot {p.vm_boot_s} s"
        )
        for k, name in enumerate(PATHS):
            on = path == k
            if on.any():
                lk = lat[on & np.isfinite(lat)]
                print(
                    f"  {name}: {on.sum()} req, {(miss & on).sum()} miss; p50/p99 "
                    f"{np.percentile(lk, 50) if lk.size else 0:.0f}/"
                    f"{np.percentile(lk, 99) if lk.size else 0:.0f} ms"
                )
        arr, tl = sub.arrivals_s, r.timeline
        t_tl = np.asarray(tl.t_s)
        bins = np.floor(arr / bin_s).astype(int)
        worst = np.unique(bins[miss], return_counts=True)
        top = set(worst[0][np.argsort(-worst[1])[:top_n]].tolist())
        for b in sorted(top):
            sel = bins == b
            m = miss & sel
            k = np.searchsorted(t_tl, b * bin_s)
            k2 = np.searchsorted(t_tl, (b + 1) * bin_s)
            ready = tl.vm_ready[k:k2] or [0]
            boot = tl.vm_booting[k:k2] or [0]
            want = tl.vm_desired[k:k2] or [0]
            print(
                f"  t {b * bin_s:7.0f}s: {sel.sum():5d} arr {m.sum():5d} miss "
                f"(vm {(m & (path == 0)).sum()}, fn {(m & (path == 1)).sum()}, "
                f"ref {(m & (path == 2)).sum()}) ready {min(ready)}-{max(ready)} "
                f"booting {max(boot)} desired {min(want)}-{max(want)}"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--bin-s", type=float, default=60.0)
    ap.add_argument("--top", type=int, default=12, help="the bins with most misses")
    ap.add_argument("--csv-dir", default=str(ROOT / "ops/bench/results/heldout_rand4"))
    args = ap.parse_args()
    params = parse_params(args.param) or None
    for run in heldout_rand4.rand4():
        if any(o in run.name for o in args.only):
            describe(run, Path(args.csv_dir), params, args.bin_s, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
