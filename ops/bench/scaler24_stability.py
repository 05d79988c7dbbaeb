"""How much slo-aware's attainment and cost move under small changes of its input (session 24):
a chaotic fleet turns a few seconds' difference into points of attainment, and the policy is
judged on traces nobody has seen.

    nice -n 15 .venv/bin/python ops/bench/scaler24_stability.py [--only NAME ...]
        [--set input|policy|all] [--param autoscaling.X=V ...] [--jobs 2] [--json OUT] [--fleet]

Each row runs the unperturbed input and perturbations of it. ``--set input`` (default): the
simulator's seed +1 and +2 (the function draws and cold starts, same arrivals), two arrival
jitters (each arrival moved by a uniform +-0.5 s, seeds 1 and 2) and the VM boot -+5 %.
``--set policy``: the scaler's level smoothing 0.04 / 0.06 (the preset's 0.05: its VMs asked
a little earlier or later) and its scale-in cooldown 170 / 190 s (180). ``--set all``: both. A row
prints the unperturbed figures and the spread over its runs (attainment max - min in points,
cost max / min - 1 in %); the last line the mean spreads. ``--fleet`` also prints, per run,
the ticks the regret's fixed fleet decided and how many times the scaler's wanted fleet
changed. Rows: rand4 runs (traces read from ops/bench/results/heldout_rand4, written by
``heldout.py --set rand4``; ``--csv-dir``) and sweep cells.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ops.bench import heldout_rand4  # noqa: E402
from ops.bench.scaler_sweep import TRACES, load, parse_params  # noqa: E402
from ops.sim import SimProfile, simulate  # noqa: E402
from ops.traces import Trace  # noqa: E402

CSV_DIR = ROOT / "ops/bench/results/heldout_rand4"
RAND4_ROWS = ("slo502 s2", "slo62 s5", "slo638 s9", "slo852 s7", "slo789 s4")
SWEEP_ROWS = ("mmpp s1", "mmpp s3", "flash s0", "code x20")
# (name, sim seed offset, jitter seed (0: none), boot factor, scaler params over the preset's)
PERTURBATIONS = {
    "input": (
        ("base", 0, 0, 1.0, {}),
        ("seed+1", 1, 0, 1.0, {}),
        ("seed+2", 2, 0, 1.0, {}),
        ("jitter1", 0, 1, 1.0, {}),
        ("jitter2", 0, 2, 1.0, {}),
        ("boot-5%", 0, 0, 0.95, {}),
        ("boot+5%", 0, 0, 1.05, {}),
    ),
    # the scaler's own small knobs: when it asks (its level's smoothing) and lets go (cooldown)
    "policy": (
        ("base", 0, 0, 1.0, {}),
        ("alpha0.04", 0, 0, 1.0, {"autoscaling.level_alpha": 0.04}),
        ("alpha0.06", 0, 0, 1.0, {"autoscaling.level_alpha": 0.06}),
        ("cool170", 0, 0, 1.0, {"autoscaling.scale_in_cooldown_s": 170.0}),
        ("cool190", 0, 0, 1.0, {"autoscaling.scale_in_cooldown_s": 190.0}),
    ),
}
JITTER_S = 0.5


def jittered(trace: Trace, seed: int, jitter_s: float = JITTER_S) -> Trace:
    """Each arrival moved by a uniform +-``jitter_s``, kept within the trace, re-sorted."""
    rng = np.random.default_rng(seed)
    t = trace.arrivals_s + rng.uniform(-jitter_s, jitter_s, len(trace))
    t = np.clip(t, 0.0, None)
    order = np.argsort(t, kind="stable")
    return Trace(
        trace.name,
        t[order],
        trace.model_idx[order],
        trace.tenant_idx[order],
        trace.models,
        trace.tenants,
    )


def _parts(name: str, csv_dir: Path = CSV_DIR) -> tuple[list[tuple[Trace, SimProfile]], int]:
    """The (trace, profile) of each model of a row (one for a sweep cell), and its seed."""
    for run in heldout_rand4.rand4():
        if name in run.name:
            trace = heldout_rand4.build_trace(run, csv_dir)
            parts = [
                (
                    trace.only_model(m) if len(trace.models) > 1 else trace,
                    heldout_rand4.model_profile(m, slo),
                )
                for m, slo in run.models().items()
            ]
            return parts, run.seed
    for cell, source, scale, seed in TRACES:
        if cell == name:
            return [(load(source, scale, seed), SimProfile.reference())], seed
    raise SystemExit(f"no rand4 run or sweep cell named {name!r}")


_COUNTS: dict[str, int] = {}


def _fleet_counter() -> dict[str, int]:
    """Counts, over the Predictive scalers of the next run, ticks decided by the fixed fleet and
    changes of the wanted fleet (``decide`` patched once, in this process only)."""
    from policies.autoscaling import predictive

    if not _COUNTS:
        decide = predictive.Predictive.decide

        def counted(self, state):
            d = decide(self, state)
            _COUNTS["fixed_ticks"] += d.reason == predictive.FIXED_FLEET
            last = getattr(self, "_s24_last", None)
            _COUNTS["changes"] += last is not None and last != d.replicas
            self._s24_last = d.replicas
            return d

        predictive.Predictive.decide = counted  # type: ignore[method-assign]
    _COUNTS.update(fixed_ticks=0, changes=0)
    return _COUNTS


def run_one(
    name: str, pert: tuple, params: dict | None, fleet: bool, csv_dir: Path = CSV_DIR
) -> dict:
    label, seed_off, jitter_seed, boot_x, knobs = pert
    params = {**(params or {}), **knobs} or None
    counts = _fleet_counter() if fleet else None
    parts, seed = _parts(name, csv_dir)
    requests = met = cost = 0.0
    for trace, profile in parts:
        if jitter_seed:
            trace = jittered(trace, jitter_seed)
        if boot_x != 1.0:
            profile = profile.with_overrides(vm_boot_s=profile.vm_boot_s * boot_x)
        s = simulate(trace, "slo-aware", profile, seed=seed + seed_off, params=params).summary
        requests += s["requests"]
        met += s["slo_attainment"] * s["requests"]
        cost += s["cost_usd"]
    out = {"row": name, "perturbation": label, "attain": met / max(requests, 1), "cost": cost}
    return {**out, **dict(counts or {})}


def spread(runs: list[dict]) -> tuple[float, float]:
    """(attainment max - min in points, cost max / min - 1 in %)."""
    att, cost = [r["attain"] for r in runs], [r["cost"] for r in runs]
    return 100 * (max(att) - min(att)), 100 * (max(cost) / max(min(cost), 1e-12) - 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], help="rows whose name holds this")
    ap.add_argument("--param", action="append", default=[], help="autoscaling.X=V (JSON value)")
    ap.add_argument("--set", dest="which", choices=[*PERTURBATIONS, "all"], default="input")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--fleet", action="store_true", help="count fixed-fleet ticks and changes")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--csv-dir", type=Path, default=CSV_DIR, help="rand4's cached traces")
    args = ap.parse_args()
    params = parse_params(args.param) or None
    rows = [
        r for r in (*RAND4_ROWS, *SWEEP_ROWS) if not args.only or any(o in r for o in args.only)
    ]
    perts = PERTURBATIONS.get(args.which) or (*PERTURBATIONS["input"], *PERTURBATIONS["policy"][1:])
    jobs = [(r, p) for r in rows for p in perts]
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        futures = [pool.submit(run_one, r, p, params, args.fleet, args.csv_dir) for r, p in jobs]
        results = []
        for f in futures:  # (each as it ends: a long run shows its progress)
            results.append(f.result())
            print(json.dumps(results[-1]), flush=True)
    print(f"{'row':<12} {'attain %':>8} {'cost $':>7} {'att spread':>10} {'cost spread':>11}")
    spreads, by_row = [], {}
    for row in rows:
        runs = [r for r in results if r["row"] == row]
        base = runs[0]
        a, c = spread(runs)
        spreads.append((a, c))
        by_row[row] = {"runs": runs, "attain_spread_pt": a, "cost_spread_pct": c}
        print(f"{row:<12} {100 * base['attain']:8.2f} {base['cost']:7.4f} {a:9.2f}p {c:10.1f}%")
        if args.fleet:
            for r in runs:
                print(
                    f"   {r['perturbation']:<8} {100 * r['attain']:6.2f} {r['cost']:.4f} "
                    f"fixed {r['fixed_ticks']:5d} changes {r['changes']:4d}"
                )
    mean_a = sum(a for a, _ in spreads) / len(spreads)
    mean_c = sum(c for _, c in spreads) / len(spreads)
    print(f"mean spread ({len(rows)} rows): attainment {mean_a:.2f} points, cost {mean_c:.1f} %")
    if args.json_out:
        out = {"params": params, "rows": by_row, "mean_attain_spread_pt": mean_a}
        Path(args.json_out).write_text(
            json.dumps({**out, "mean_cost_spread_pct": mean_c}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
