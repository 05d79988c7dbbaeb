"""Where a 2-worker plan's extra CPU goes: tiling or sharing the cores? Per split stage.

For each split stage of a model's latency-optimal plan (``tidegate plan``'s, from the bundled
reference profile): the stage's nodes whole on one thread, each leg alone, then the legs at
once in one process each (one torch thread, started together each rep). Thread CPU time (what
a leg costs a core, whatever else waits for one) and wall. ``tiling`` is the legs' CPU alone
over the whole stage's (halos, smaller tiles, crops); ``sharing`` is a leg's CPU at once over
alone (two legs on this host's cores competing for caches and memory).

    flock /work/coord/bench.lock .venv/bin/python ops/bench/burst25plan_legs.py --repo R
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from burst.execute import run_nodes  # noqa: E402
from ops.bench.stage_legs import CPU_MS, WALL_MS, median, run_together, use_stage  # noqa: E402


def stage_rows(graph, weights, plan, reps: int) -> list[dict]:
    env = {graph.inputs[0]: torch.randn(1, *plan.input_shapes[0][1:])}
    rows = []
    with torch.no_grad():
        for stage in plan.stages:
            if stage.split != "serial":
                use_stage(graph, weights, stage, env[stage.input])
                legs = list(range(stage.workers))
                whole = run_together(["whole"], reps)["whole"]
                alone = {j: run_together([j], reps)[j] for j in legs}
                together = run_together(legs, reps)
                rows.append(
                    {
                        "stage": stage.index,
                        "split": str(stage.split.value),
                        "leg_macs": list(stage.leg_macs),
                        "stage_macs": stage.macs,
                        "whole_cpu_ms": median(whole, CPU_MS),
                        "alone_cpu_ms": [median(alone[j], CPU_MS) for j in legs],
                        "together_cpu_ms": [median(together[j], CPU_MS) for j in legs],
                        "together_wall_ms": [median(together[j], WALL_MS) for j in legs],
                    }
                )
            run_nodes(graph, list(stage.nodes), env, weights)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-mb", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--split", default="auto", help="auto (the latency plan) or a forced split")
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/burst25plan_legs.json")
    args = ap.parse_args()
    from burst.graph import program_weights
    from burst.planning import PlanRequest, load_profile, model_plan
    from burst.service_plans import load_graph
    from vmpool.artifact import load_artifact

    torch.set_num_threads(1)
    graph, config = load_graph(args.repo, args.model)
    weights = program_weights(load_artifact(args.repo, args.model).load_program())
    request = PlanRequest(workers=args.workers, memory_mb=args.memory_mb, split=args.split)
    plan = model_plan(graph, config, request, load_profile())
    load0 = os.getloadavg()[0]
    rows = stage_rows(graph, weights, plan, args.reps)
    print(f"{args.model} x{args.workers}: load {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    print(
        "stage split    whole cpu  legs alone cpu    legs at once cpu  at once wall  tiling sharing"
    )
    for r in rows:
        tiling = sum(r["alone_cpu_ms"]) / r["whole_cpu_ms"]
        sharing = sum(r["together_cpu_ms"]) / sum(r["alone_cpu_ms"])
        r.update(tiling=tiling, sharing=sharing)
        print(
            f"{r['stage']:>5} {r['split']:<8} {r['whole_cpu_ms']:9.1f} "
            f"{' / '.join(f'{v:.1f}' for v in r['alone_cpu_ms']):>15} "
            f"{' / '.join(f'{v:.1f}' for v in r['together_cpu_ms']):>19} "
            f"{' / '.join(f'{v:.1f}' for v in r['together_wall_ms']):>13} "
            f"{tiling:6.2f} {sharing:7.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "load": load0, "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
