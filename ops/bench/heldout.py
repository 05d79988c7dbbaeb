"""The scaler's held-out sets beside ``scaler_sweep.py``'s 13 traces (docs/ops.md, sessions 10
and 11): slo-aware against the offline bound and vm-peak on runs no scaler change was chosen on.

    .venv/bin/python ops/bench/heldout.py --set 18|20|v3|v4|mmpp8|rand|rand2|rand3|rand4
        [--param autoscaling.X=V] [--cache FILE] [--json OUT] [--csv-dir DIR] [--only NAME]
        [--fleet shared|per-model]

``18``: other MMPP and flash-crowd parameters, seeds 0-1; ``20``: MMPP bursts about as long as a
VM boot, seeds 0-4; ``v3``: session 10b's 11 held-out runs; ``v4``: session 11's 12 runs used
to choose nothing; ``mmpp8``: the sweep's MMPP, seeds 0-7; ``rand``: 16 MMPP traces whose
rates and burst lengths are drawn once (low 10-80 req/s, high 200-800, bursts 5-120 s
log-uniform, gaps 60-600 s; a fixed generator, so the set is the same each run; session 14);
``rand2``: 20 traces from another generator (14 MMPP over wider ranges, 2 diurnal, 2 flash
crowds, 2 steps), kept for validation only (session 15); ``rand3``: 24 traces from a third
generator (12 MMPP at other rates, 4 each of flash crowds, diurnal, steps; session 19);
``rand4``: 24 runs of other models at their own SLOs, multi-model traces, 1-5 req/s and hours
of silence before a burst (``heldout_rand4.py``; session 21; ``--csv-dir`` keeps its CSVs).
Its traces of several models run on one shared fleet (``--fleet shared``, the default, as
``tidegate simulate``; the optimum is then the shared fleet's relaxed bound) or one fleet per
model, summed (``--fleet per-model``, the figures of sessions 21-24).
Each row: attainment %, cost $, cost / optimum, vm-peak's cost / cost, VM hours; then the
set's total cost. Reference profile, simulated time: run it niced.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ops.bench import heldout_rand4  # noqa: E402
from ops.bench.scaler_sweep import load, parse_params  # noqa: E402
from ops.sim import SimProfile, simulate  # noqa: E402
from ops.sim.shared_run import simulate_shared  # noqa: E402

M = "synth:mmpp:duration_s=3600,low_rps={},high_rps={},mean_low_s={},mean_high_s={}"
F = "synth:flash-crowd:duration_s=3600,base_rps={},peak_mult={},start_s={},ramp_s={},hold_s={},decay_s={}"
D = "synth:diurnal:duration_s={0},mean_rps={1},peak_to_trough=3,period_s={0},bursts={2},burst_mult={3},burst_s={4}"
SWEEP_MMPP, SWEEP_FLASH = M.format(30, 400, 240, 15), F.format(20, 20, 1200, 20, 120, 300)
V18 = [
    ("mmpp mh8", M.format(30, 400, 240, 8)),
    ("mmpp mh30", M.format(30, 400, 240, 30)),
    ("mmpp mh60", M.format(30, 400, 240, 60)),
    ("mmpp mh120", M.format(30, 400, 600, 120)),
    ("mmpp h250", M.format(30, 250, 120, 15)),
    ("mmpp h800", M.format(60, 800, 300, 20)),
    ("flash pm5", F.format(20, 5, 600, 10, 60, 120)),
    ("flash pm10 long", F.format(30, 10, 900, 60, 900, 600)),
    ("flash pm30 short", F.format(20, 30, 1500, 5, 30, 60)),
]
V20 = [
    ("mmpp mh30", M.format(30, 400, 240, 30)),
    ("mmpp mh45", M.format(30, 400, 240, 45)),
    ("mmpp mh60", M.format(30, 400, 240, 60)),
    ("mmpp mh20 ml120", M.format(30, 400, 120, 20)),
]


def _random_mmpp(n: int, seed: int = 14) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)
    runs = []
    for i in range(n):
        low, high = rng.randint(10, 80), rng.randint(200, 800)
        gap, burst = rng.randint(60, 600), round(math.exp(rng.uniform(math.log(5), math.log(120))))
        runs.append(
            (f"rand {low}/{high} ml{gap} mh{burst} s{i}", M.format(low, high, gap, burst), i)
        )
    return runs


def _random_mixed(seed: int = 15) -> list[tuple[str, str, int]]:
    """Session 15's validation set, drawn once from its own generator and tuned on by nothing:
    14 MMPP (low 10-100 req/s, high 150-900, bursts 5-150 s and gaps 60-600 s log-uniform) and
    two each of diurnal, flash-crowd and step shapes with drawn parameters."""
    rng = random.Random(seed)

    def logu(lo: float, hi: float) -> int:
        return round(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    runs = []
    for i in range(14):
        low, high = rng.randint(10, 100), rng.randint(150, 900)
        gap, burst = logu(60, 600), logu(5, 150)
        name = f"rand2 {low}/{high} ml{gap} mh{burst} s{i}"
        runs.append((name, M.format(low, high, gap, burst), 100 + i))
    for i in range(14, 16):
        mean, n, mult, dur = (
            rng.randint(40, 150),
            rng.randint(5, 20),
            rng.randint(2, 5),
            logu(20, 90),
        )
        src = D.format(3600, mean, n, mult, dur)
        runs.append((f"rand2 diurnal {mean} b{n}x{mult} {dur}s s{i}", src, 100 + i))
    for i in range(16, 18):
        base, mult, hold = rng.randint(10, 60), rng.randint(5, 30), logu(30, 900)
        start, ramp = rng.randint(300, 2400), logu(5, 120)
        src = F.format(base, mult, start, ramp, hold, logu(30, 600))
        runs.append((f"rand2 flash {base}x{mult} h{hold} s{i}", src, 100 + i))
    for i in range(18, 20):
        base, mult, step = rng.randint(20, 100), rng.randint(2, 8), logu(120, 1800)
        start = rng.randint(300, 3600 - step)
        src = (
            f"synth:step:duration_s=3600,base_rps={base},mult={mult},start_s={start},step_s={step}"
        )
        runs.append((f"rand2 step {base}x{mult} {step}s s{i}", src, 100 + i))
    return runs


def _random_mixed3(seed: int = 19) -> list[tuple[str, str, int]]:
    """Session 19's held-out set, drawn before any change of that session from its own
    generator: 12 MMPP at other rates (low 5-150 req/s, high 120-1200, bursts 3-200 s and
    gaps 40-900 s log-uniform), and four each of flash-crowd, diurnal and step shapes."""
    rng = random.Random(seed)

    def logu(lo: float, hi: float) -> int:
        return round(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    runs = []
    for i in range(12):
        low, high = logu(5, 150), logu(120, 1200)
        gap, burst = logu(40, 900), logu(3, 200)
        name = f"rand3 {low}/{high} ml{gap} mh{burst} s{i}"
        runs.append((name, M.format(low, high, gap, burst), 200 + i))
    for i in range(12, 16):
        base, mult, hold = logu(5, 120), logu(3, 40), logu(15, 1200)
        start, ramp = rng.randint(120, 2700), logu(2, 180)
        src = F.format(base, mult, start, ramp, hold, logu(20, 900))
        runs.append((f"rand3 flash {base}x{mult} h{hold} s{i}", src, 200 + i))
    for i in range(16, 20):
        mean, n, mult, dur = logu(20, 300), rng.randint(3, 30), logu(2, 8), logu(10, 180)
        src = D.format(3600, mean, n, mult, dur)
        runs.append((f"rand3 diurnal {mean} b{n}x{mult} {dur}s s{i}", src, 200 + i))
    for i in range(20, 24):
        base, mult, step = logu(10, 200), logu(2, 10), logu(60, 2400)
        start = rng.randint(60, 3600 - step)
        src = (
            f"synth:step:duration_s=3600,base_rps={base},mult={mult},start_s={start},step_s={step}"
        )
        runs.append((f"rand3 step {base}x{mult} {step}s s{i}", src, 200 + i))
    return runs


SETS: dict[str, list[tuple[str, str, int]]] = {
    "18": [(f"{n} s{s}", src, s) for n, src in V18 for s in (0, 1)],
    "20": [(f"{n} s{s}", src, s) for n, src in V20 for s in range(5)],
    "v3": [
        *[(f"mmpp sweep s{s}", SWEEP_MMPP, s) for s in (5, 6, 7)],
        *[(f"mmpp h600 mh40 s{s}", M.format(50, 600, 180, 40), s) for s in (0, 1)],
        *[(f"mmpp mh90 ml300 s{s}", M.format(30, 400, 300, 90), s) for s in (0, 1)],
        *[(f"diurnal 2h s{s}", D.format(7200, 120, 10, 3, 60), s) for s in (0, 1)],
        ("diurnal 1h b20 s0", D.format(3600, 100, 20, 3, 45), 0),
        (
            "step x6 20min s0",
            "synth:step:duration_s=3600,base_rps=50,mult=6,start_s=1800,step_s=1200",
            0,
        ),
    ],
    "v4": [
        *[(f"mmpp 40/500 ml200 mh25 s{s}", M.format(40, 500, 200, 25), s) for s in (0, 1)],
        *[(f"mmpp 20/300 ml150 mh50 s{s}", M.format(20, 300, 150, 50), s) for s in (0, 1)],
        ("mmpp 80/700 ml400 mh70 s0", M.format(80, 700, 400, 70), 0),
        *[(f"mmpp sweep s{s}", SWEEP_MMPP, s) for s in (8, 9)],
        ("flash pm15 s5", F.format(25, 15, 1500, 30, 200, 400), 5),
        ("flash pm25 s6", F.format(15, 25, 800, 10, 90, 200), 6),
        ("flash sweep s7", SWEEP_FLASH, 7),
        ("diurnal 1h b12 s2", D.format(3600, 80, 12, 4, 30), 2),
        (
            "step x4 10min s1",
            "synth:step:duration_s=3600,base_rps=60,mult=4,start_s=1200,step_s=600",
            1,
        ),
    ],
}
# session 14's (not yet counted in docs/ops.md, whose sets are ``SETS``)
MORE_SETS: dict[str, list[tuple[str, str, int]]] = {
    "mmpp8": [(f"mmpp sweep s{s}", SWEEP_MMPP, s) for s in range(8)],
    "rand": _random_mmpp(16),
    # session 15: a validation set no change is chosen on (reported before/after only)
    "rand2": _random_mixed(),
    # session 19: drawn before that session changed anything, reported before/after
    "rand3": _random_mixed3(),
}


def _run_rand4(run, csv_dir: Path, cache: dict, params, fleet: str = "shared") -> dict:
    """One rand4 run. A trace of several models runs on one shared fleet (``fleet``
    "shared", as ``tidegate simulate`` does by default; its optimum is the shared bound) or
    each model on its own fleet, summed ("per-model": one gateway per model)."""
    trace = heldout_rand4.build_trace(run, csv_dir)
    if fleet == "shared" and len(trace.models) > 1:
        return _run_rand4_shared(run, trace, cache, params)
    total = {"requests": 0, "met": 0.0, "cost_usd": 0.0, "vm_hours": 0.0}
    ref = cache.get(run.name) or {"vm-peak": 0.0, "optimum": 0.0}
    for model, slo_ms in run.models().items():
        sub = trace.only_model(model) if len(trace.models) > 1 else trace
        profile = heldout_rand4.model_profile(model, slo_ms)
        if run.name not in cache:
            for p in ("vm-peak", "optimum"):
                ref[p] += simulate(sub, p, profile, seed=run.seed).summary["cost_usd"]
        s = simulate(sub, "slo-aware", profile, seed=run.seed, params=params).summary
        total["requests"] += s["requests"]
        total["met"] += s["slo_attainment"] * s["requests"]
        total["cost_usd"] += s["cost_usd"]
        total["vm_hours"] += s["vm_hours"]
    cache[run.name] = ref
    attained = total["met"] / max(total["requests"], 1)
    return {
        "slo_attainment": attained,
        "cost_usd": total["cost_usd"],
        "vm_hours": total["vm_hours"],
    }


def cache_key(name: str, fleet: str, shared: bool) -> str:
    """A mixed run's vm-peak and optimum on a shared fleet are cached apart from its
    per-model sums (one file serves both ``--fleet`` runs)."""
    return f"{name} [shared]" if fleet == "shared" and shared else name


def _run_rand4_shared(run, trace, cache: dict, params) -> dict:
    key = cache_key(run.name, "shared", True)
    models = run.models()
    profiles = [heldout_rand4.model_profile(m, models[m]) for m in trace.models]
    if key not in cache:
        cache[key] = {
            p: simulate_shared(trace, p, profiles, seed=run.seed).summary["cost_usd"]
            for p in ("vm-peak", "optimum")
        }
    s = simulate_shared(trace, "slo-aware", profiles, seed=run.seed, params=params).summary
    return {k: s[k] for k in ("slo_attainment", "cost_usd", "vm_hours")}


def save_cache(path: Path, cache: dict) -> dict:
    """Write ``cache`` merged over what ``path`` holds now: runs of the set sharing the file
    (``--only`` rows beside a whole set) each wrote their own dict over it, and the last
    writer's dropped the others' rows (a whole rand4 run kept 20 of its 24)."""
    merged = {**json.loads(path.read_text()), **cache} if path.is_file() else dict(cache)
    path.write_text(json.dumps(merged))
    return merged


def _runs(which: str, only: list[str]):
    if which == "rand4":
        runs = [(r.name, r, r.seed) for r in heldout_rand4.rand4()]
    else:
        runs = list({**SETS, **MORE_SETS}[which])
    return [r for r in runs if not only or any(o in r[0] for o in only)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", dest="which", choices=[*SETS, *MORE_SETS, "rand4"], required=True)
    ap.add_argument("--param", action="append", default=[], help="autoscaling.X=V (JSON value)")
    ap.add_argument("--cache", help="JSON file keeping vm-peak's and the optimum's cost")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--only", action="append", default=[], help="runs whose name holds this")
    ap.add_argument("--csv-dir", default=str(ROOT / "ops/bench/results/heldout_rand4"))
    ap.add_argument(
        "--fleet",
        choices=("shared", "per-model"),
        default="shared",
        help="rand4's traces of several models: one shared fleet (default, as tidegate "
        "simulate) or one fleet per model, summed (sessions 21-24's figures)",
    )
    args = ap.parse_args()
    params = parse_params(args.param) or None
    cache_path = Path(args.cache) if args.cache else None
    cache = json.loads(cache_path.read_text()) if cache_path and cache_path.is_file() else {}
    profile, rows, total = SimProfile.reference(), {}, 0.0
    for name, source, seed in _runs(args.which, args.only):
        key = cache_key(name, args.fleet, args.which == "rand4" and len(source.models()) > 1)
        if key not in cache and cache_path and cache_path.is_file():  # another run's, since
            cache = {**json.loads(cache_path.read_text()), **cache}
        if args.which == "rand4":
            s = _run_rand4(source, Path(args.csv_dir), cache, params, args.fleet)
        else:
            trace = load(source, 1.0, seed)
            if name not in cache:
                cache[name] = {
                    p: simulate(trace, p, profile, seed=seed).summary["cost_usd"]
                    for p in ("vm-peak", "optimum")
                }
            s = simulate(trace, "slo-aware", profile, seed=seed, params=params).summary
        if cache_path:
            cache = save_cache(cache_path, cache)
        ref, cost = cache[key], s["cost_usd"]
        rows[name] = {**{k: s[k] for k in ("slo_attainment", "cost_usd", "vm_hours")}, **ref}
        total += cost
        print(
            f"{name:<26} {100 * s['slo_attainment']:6.2f} {cost:.4f} "
            f"{cost / ref['optimum']:6.3f} {ref['vm-peak'] / cost:5.2f} {s['vm_hours']:5.2f}",
            flush=True,
        )
    print(f"total ({len(rows)} runs): ${total:.4f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"set": args.which, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
