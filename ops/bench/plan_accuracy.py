"""Are the planner's predictions honest? Predicted vs measured warm latency on the local runtime.

For each model and worker count: the plan the gateway runs (``BurstService.plan_for``, the
gateway's burst backend, same planner and profile as ``tidegate plan``), its predicted p50/p99,
and the warm p50/p99 measured through the burst service on the local function runtime; and
per model the cheapest plan for an SLO between the fastest and the slowest plan's predicted
p99: does it meet the SLO when measured? A model's plans are measured in turns (``_measure``).
Prints a table with the load average and writes JSON (ops/bench/results/plan_accuracy.json).

    python ops/bench/plan_accuracy.py [--models resnet50,vgg16,mobilenet_v2] [--workers 1,2,4]
        [--warm 12] [--memory-mb 1024] [--repo REPO] [--measure-profile]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ops.bench.procs import work_dir  # noqa: E402

from burst.plan import PlanError  # noqa: E402
from burst.service import BurstService, BurstUnavailable  # noqa: E402
from ops.bench import request_trace, schedstat  # noqa: E402
from ops.bench.accuracy_rows import accuracy_row, format_row, slo_check  # noqa: E402

from ops.profile_calibrate import WARMUP  # noqa: E402  (the profile's: the same state)

# where the cost plan's SLO sits between the fastest and the slowest latency plan's p99
SLO_FRACTION = 0.5


async def _measure(svc, model: str, keys: list[tuple[int, str]], x, reps: dict) -> dict:
    """Per plan key (workers, split): its warm answers (``BurstAnswer``: total, and the
    master's report of its own time) and what the function runtime and its instances spent
    per request on a core and waiting for one. The plans take turns where they fit one
    master's weight cache (``ops.profile_calibrate.measure_plans``)."""
    from ops.profile_calibrate import measure_plans
    from ops.profile_drift import HostProbe

    name = svc._configs[model].inputs[0].name
    used = {key: schedstat.SchedTimes(0.0, 0.0) for key in keys}
    traces: dict = {key: [] for key in keys}  # per timed request: why it took what it took
    origin_s, probe = time.perf_counter(), HostProbe()  # the host's pace, as the profile reads it

    async def request(key, timed):
        tracer = request_trace.Tracer(origin_s)
        answer = await svc.infer(model, {name: x}, workers=key[0], split=key[1])
        if timed:
            traces[key].append(trace := tracer.done(answer, probe))
            was, n = used[key], reps[key]
            used[key] = schedstat.SchedTimes(
                was.run_ms + trace.fn_run_ms / n, was.wait_ms + trace.fn_wait_ms / n
            )
        return answer

    got = await measure_plans(svc, model, keys, reps, WARMUP, request, print)
    return {key: (answers, used[key], traces[key]) for key, answers in got.items()}


async def run_model(
    repo: Path,
    data: Path,
    model: str,
    workers: list[int],
    warm: int,
    memory_mb: int,
    cost_row: bool = True,
    slo_warm: int | None = None,
) -> list[dict]:
    from burst.planning import load_profile, predict_plan

    svc = BurstService(
        repo,
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(data / "objects")},
        memory_mb=memory_mb,
        concurrency=max(workers) + 4,
        keep_alive_s=600,
        function_timeout_s=600,
        log_dir=data / "logs",
        max_workers=max(max(workers), 2),
    )
    await svc.start()
    try:
        profile = load_profile(repo, model)
        plans = []  # (label, key, plan, prediction, SLO)
        for k in workers:
            try:
                plan = await svc.plan_for(model, k, 1)
            except (BurstUnavailable, PlanError) as exc:  # weights no plan at k fits
                print(f"{model:<13} latency x{k:<3} {memory_mb:>5}  no plan: {exc}", flush=True)
                continue
            pred = predict_plan(svc._graphs[model], plan, svc.plan_request(k), profile)
            plans.append((f"latency x{k}", (k, "auto"), plan, pred, None))
        if not plans:
            return []
        if cost_row:
            plans.append(await _cost_plan(svc, model, profile, plans, max(workers)))
        shape = [1 if d == -1 else d for d in svc._configs[model].inputs[0].shape]
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        reps = {p[1]: warm if p[4] is None else slo_warm or warm for p in plans}
        measured = await _measure(svc, model, [p[1] for p in plans], x, reps)
    finally:
        await svc.close()
    rows = []
    for label, key, plan, pred, slo in (p for p in plans if p[1] in measured):
        answers, sched, traces = measured[key]
        rows.append(accuracy_row(model, label, memory_mb, plan, pred, (answers, sched)))
        rows[-1]["requests"] = request_trace.as_json(traces)
        note = "" if slo is None else slo_check(rows[-1], pred, slo, rows[:-1])
        print(format_row(rows[-1]) + note, flush=True)
        if slo is not None:
            rows[-1]["evidence"] = ev = request_trace.slow_vs_rest(traces, slo)
            print(request_trace.format_evidence(ev), flush=True)
    print(request_trace.format_probes(rows), flush=True)
    return rows


async def _cost_plan(svc, model, profile, latency_plans, k) -> tuple:
    """The cost-objective plan, for an SLO set from the latency plans' predicted p99s: halfway
    between the fastest and the slowest; if they are alike, the fastest's own (feasible by the
    model and tight: 1.3x it, as before, was met by any plan and tested no tail)."""
    from burst.planning import Objective, model_plan, predict_plan
    from burst.service_plans import model_files_stamp

    p99s = [pred.p99_ms for _, _, _, pred, _ in latency_plans]
    slo = min(p99s) + SLO_FRACTION * (max(p99s) - min(p99s))
    slo = slo if max(p99s) > min(p99s) * 1.05 else min(p99s) * (1.001 + SLO_FRACTION - 0.5)
    request = dataclasses.replace(
        svc.plan_request(k), objective=Objective.COST, slo_ms=slo, percentile=0.99
    )
    graph = svc._graphs[model]
    plan = await asyncio.to_thread(model_plan, graph, svc._configs[model], request, profile)
    await asyncio.to_thread(svc._prepare_blocking, model, plan)
    # the bench runs this plan under its own key (the service's: with its files' stamp)
    svc._plans[(model, k, 1, "cost", model_files_stamp(svc.repo, model))] = plan
    return (f"cost x{k}", (k, "cost"), plan, predict_plan(graph, plan, request, profile), slo)


def planner_speed(repo: Path, models: list[str], workers: list[int], memory_mb: int) -> list[dict]:
    """Seconds to build the candidates and to search (latency; cost at an SLO between the
    fastest and the one-function plan), per model and worker count: no functions run."""
    from burst.graph import build_graph
    from burst.planning import PlanRequest, load_profile, search_inputs
    from policies.planner import PlanningError, cheapest_meeting_slo, latency_optimal
    from vmpool.artifact import load_artifact

    rows = []
    for model in models:
        graph = build_graph(load_artifact(repo, model).load_program(), model)
        for k in workers:
            req = PlanRequest(workers=k, memory_mb=memory_mb)
            c0 = time.process_time()  # CPU seconds: what a loaded, shared machine cannot inflate
            t0 = time.perf_counter()
            perf, cands, _ = search_inputs(graph, req, load_profile(repo, model))
            t1, c1 = time.perf_counter(), time.process_time()
            try:
                fast = latency_optimal(perf, cands, req.limits())
                t2, c2 = time.perf_counter(), time.process_time()
                slo = fast.prediction.p99_ms * 1.5
                cheapest_meeting_slo(perf, cands, req.limits(), slo, 0.99)
                t3, c3 = time.perf_counter(), time.process_time()
            except PlanningError as exc:
                print(f"{model:<13} x{k:<3} {exc}")
                continue
            rows.append(
                {
                    "model": model,
                    "workers": k,
                    "candidates": len(cands),
                    "candidates_s": t1 - t0,
                    "latency_s": t2 - t1,
                    "cost_s": t3 - t2,
                    "candidates_cpu_s": c1 - c0,
                    "latency_cpu_s": c2 - c1,
                    "cost_cpu_s": c3 - c2,
                }
            )
            r = rows[-1]
            print(
                f"{model:<13} x{k:<3} {r['candidates']:>6} {r['candidates_s']:>8.2f} "
                f"{r['latency_s']:>8.3f} {r['cost_s']:>8.3f}   cpu {r['candidates_cpu_s']:>6.2f}"
                f" {r['latency_cpu_s']:>6.3f} {r['cost_cpu_s']:>6.3f}",
                flush=True,
            )
    return rows


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="resnet50,vgg16,mobilenet_v2")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--warm", type=int, default=12, help="warm requests per plan")
    ap.add_argument(
        "--slo-warm",
        type=int,
        default=100,
        help="warm requests of the cost plan (default 100: a p99 of fewer is in effect "
        "their slowest, and the check says so)",
    )
    ap.add_argument("--memory-mb", type=int, default=1024)
    ap.add_argument("--repo", type=Path, help="model repository (default: export into a temp dir)")
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/plan_accuracy.json")
    ap.add_argument("--speed-only", action="store_true", help="only time the planner")
    ap.add_argument(
        "--measure-profile",
        action="store_true",
        help="run `tidegate profile` for each model first and predict from it (else "
        "REPO/MODEL/profile.json if present, else the bundled reference profile)",
    )
    ap.add_argument("--speed-workers", default="1,2,4,8,16")
    ap.add_argument(
        "--slo-fraction",
        type=float,
        default=0.5,
        help="the cost plan's SLO: this far from the fastest latency plan's predicted p99 to "
        "the slowest's (0.5: halfway; alike plans: the fastest's p99 x (1.001 + f - 0.5))",
    )
    return ap.parse_args()


def measure_profile(repo: Path, model: str, memory_mb: int, workers: list[int]) -> str:
    """``tidegate profile MODEL`` on this machine, now (its figures are the predictions'
    input); returns the profile's source line (it names the load it was measured at)."""
    from burst.planning import load_profile
    from ops.commands import profile as profile_command

    print(f"measuring the {model} profile (tidegate profile) ...", flush=True)
    parser = argparse.ArgumentParser()  # the command's own arguments and defaults
    profile_command.add_arguments(parser)
    fan_outs = ",".join(str(w) for w in sorted({max(2, w) for w in workers}))
    args = parser.parse_args(
        [model, "--repo", str(repo), "--memory-mb", str(memory_mb), "--workers", fan_outs]
        + ["--reps", "6", "--vm-batches", "1", "--cold-reps", "0"]  # cold starts: not compared
        + ["--cold-workers", str(max(workers))]
    )
    profile_command.run(args)
    return load_profile(repo, model).source


def _accuracy_rows(args: argparse.Namespace, repo: Path, work: Path, workers: list[int]) -> list:
    """Predicted vs measured rows for every model (and VGG-16 split to fit 512 MB functions)."""
    rows = []
    for model in args.models.split(","):
        if args.measure_profile:
            print(f"  profile: {measure_profile(repo, model, args.memory_mb, workers)}")
        rows += asyncio.run(
            run_model(
                repo,
                work / model,
                model,
                workers,
                args.warm,
                args.memory_mb,
                slo_warm=args.slo_warm,
            )
        )
    if "vgg16" in args.models.split(",") and args.memory_mb > 512:
        # VGG-16's classifier (411 MB in fc6) must be split to fit 512 MB functions
        rows += asyncio.run(
            run_model(
                repo,
                work / "vgg16-512",
                "vgg16",
                [max(8, *workers)],  # fc6 alone is 411 MB: 8 ways fit 512 MB
                args.warm,
                512,
                cost_row=False,
            )
        )
    return rows


def main() -> int:
    args = _parse_args()
    global SLO_FRACTION
    SLO_FRACTION = args.slo_fraction
    import torch

    from ops.process_tuning import tune_allocator
    from vmpool.export import export_zoo

    torch.set_num_threads(1)
    tune_allocator()  # this process stands in for the gateway, which tunes it (ops serve)
    work = work_dir("tidegate-accuracy-")
    repo = args.repo or work / "models"
    workers = [int(w) for w in args.workers.split(",")]
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    for model in args.models.split(","):
        if not (repo / model / "model.pt2").is_file():
            export_zoo(model, repo)
    print(
        f"{'model':<13} {'k':<4} {'cands':>6} {'build s':>8} {'fast s':>8} {'cheap s':>8}"
        "   (wall; then CPU seconds)"
    )
    speed = planner_speed(
        repo,
        [m for m in args.models.split(",") if m != "mlp"],
        [int(w) for w in args.speed_workers.split(",")],
        args.memory_mb,
    )
    if args.speed_only:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_name("planner_speed.json").write_text(json.dumps(speed, indent=1))
        return 0
    print(
        f"{'model':<13} {'plan':<11} {'MB':>5} {'splits':>6} {'pred p50':>9} {'meas p50':>9} "
        f"{'err':>7} {'pred p99':>9} {'meas p99':>9} {'compute':>8} {'gw side':>7} "
        f"{'fn cpu':>7} {'fn wait':>7} {'load':>5}"
    )
    rows = _accuracy_rows(args, repo, work, workers)
    within = [r for r in rows if r["plan"].startswith("latency") and abs(r["error_p50"]) <= 0.25]
    latency_rows = [r for r in rows if r["plan"].startswith("latency")]
    print(
        f"p50 within 25 %: {len(within)} of {len(latency_rows)}; load average now "
        f"{os.getloadavg()[0]:.1f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"load_average": load, "at": time.time(), "rows": rows, "planner_speed": speed},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
