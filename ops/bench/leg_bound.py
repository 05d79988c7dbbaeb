"""How fast can a 2-worker plan be from its legs' compute alone? Per split stage, in-process.

For each stage of a model's forced spatial 2-worker plan: the stage's nodes run whole on one
thread, then its two legs at once in two processes (one torch thread each, started together
each rep, as the master's own leg and a worker's run), with the exact tiles the plan sends.
The bound is every stage at min(whole, slowest leg) with no round cost at all; then with a
round cost per split stage (``--round-ms``, what ``burst_scaling`` prints as ms/round).

    python ops/bench/leg_bound.py --model resnet50 --repo R [--reps 7] [--round-ms 6]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from burst.execute import run_nodes  # noqa: E402
from ops.bench.stage_legs import WALL_MS, median, run_together, use_stage  # noqa: E402


def _at_once(jobs: list, reps: int) -> dict:
    """Median wall ms of each job, all started together each rep (one process per job)."""
    return {job: median(samples, WALL_MS) for job, samples in run_together(jobs, reps).items()}


def _stage_rows(graph, weights, plan, reps: int) -> list[dict]:
    env = {graph.inputs[0]: torch.randn(1, *plan.input_shapes[0][1:])}
    rows = []
    with torch.no_grad():
        for stage in plan.stages:
            if stage.split == "spatial":
                use_stage(graph, weights, stage, env[stage.input])
                whole = _at_once(["whole"], reps)["whole"]
                legs = _at_once(list(range(stage.workers)), reps)
                rows.append(
                    {
                        "stage": stage.index,
                        "nodes": f"{stage.nodes[0]}..{stage.nodes[-1]}",
                        "whole_ms": whole,
                        "legs_at_once_ms": [legs[j] for j in range(stage.workers)],
                        "leg_work_share": max(stage.leg_macs) / max(stage.macs, 1),
                    }
                )
            t0 = time.perf_counter()
            run_nodes(graph, list(stage.nodes), env, weights)
            if stage.split != "spatial":
                ms = (time.perf_counter() - t0) * 1000.0
                rows.append({"stage": stage.index, "nodes": stage.nodes[0], "whole_ms": ms})
    return rows


def _bound(rows: list[dict], round_ms: float) -> tuple[float, float, int]:
    """(one function ms, best split ms with ``round_ms`` per split stage, split stages)."""
    one = sum(r["whole_ms"] for r in rows)
    best, rounds = 0.0, 0
    for r in rows:
        legs = max(r.get("legs_at_once_ms") or [float("inf")])
        if legs + round_ms < r["whole_ms"]:
            best, rounds = best + legs + round_ms, rounds + 1
        else:
            best += r["whole_ms"]
    return one, best, rounds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--round-ms", type=float, default=6.0, help="cost of one fork-join round")
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/leg_bound.json")
    args = ap.parse_args()
    from burst.graph import program_weights
    from burst.plan import make_plan
    from burst.service_plans import load_graph
    from vmpool.artifact import load_artifact

    torch.set_num_threads(1)
    graph, _ = load_graph(args.repo, args.model)
    weights = program_weights(load_artifact(args.repo, args.model).load_program())
    plan = make_plan(graph, workers=2, split="spatial", memory_mb=10240)
    rows = _stage_rows(graph, weights, plan, args.reps)
    print(f"{args.model}: load {os.getloadavg()[0]:.1f}, one thread per process")
    print(f"{'stage':>5} {'nodes':<28} {'whole ms':>9} {'legs at once ms':>16} {'ratio':>6}")
    for r in rows:
        legs = r.get("legs_at_once_ms")
        ratio = f"{max(legs) / r['whole_ms']:6.2f}" if legs else "     -"
        shown = " / ".join(f"{v:.1f}" for v in legs) if legs else "serial"
        print(f"{r['stage']:>5} {r['nodes'][:28]:<28} {r['whole_ms']:9.1f} {shown:>16} {ratio}")
    bounds = {}
    for round_ms in (0.0, args.round_ms):
        one, best, n = _bound(rows, round_ms)
        bounds[str(round_ms)] = {"one_ms": one, "split_ms": best, "rounds": n}
        print(
            f"bound at {round_ms:.1f} ms/round: one function {one:.1f} ms, best split "
            f"{best:.1f} ms over {n} rounds: {one / best:.2f}x"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "rows": rows, "bounds": bounds}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
