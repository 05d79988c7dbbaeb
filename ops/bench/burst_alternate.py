"""Two kinds of burst request for one model in turns, at concurrency 1, on one function runtime.

What a gateway sees when clients send ``X-Tidegate-Workers: 1`` and ``: 2`` for the same model:
one master instance serves both, so whatever its weight cache holds decides whether a request
reads the model's weights again. Prints per kind the plan, its split stages, warm p50/p90 and
how many warm requests read weight blobs from the store (``weights_loaded``, where the build
reports it; else "-").

    python ops/bench/burst_alternate.py --model vgg11 --kinds auto:1,auto:2 --warm 10 --memory-mb 2048
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ops.bench.procs import work_dir  # noqa: E402

from burst.service import BurstService  # noqa: E402


def _kinds(text: str) -> list[tuple[str, int]]:
    out = []
    for part in text.split(","):
        split, _, workers = part.partition(":")
        out.append((split, int(workers)))
    return out


async def run(repo: Path, data: Path, model: str, kinds, warm: int, memory_mb: int) -> list[dict]:
    svc = BurstService(
        repo,
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(data / "objects")},
        memory_mb=memory_mb,
        concurrency=max(4, max(w for _, w in kinds) + 2),
        keep_alive_s=600,
        function_timeout_s=600,
        log_dir=data / "logs",
        max_workers=max(w for _, w in kinds),
    )
    await svc.start()
    answers: dict = {k: [] for k in kinds}
    plans = {}
    try:
        for split, workers in kinds:
            plans[split, workers] = await svc.plan_for(model, workers, 1, split)
        name = svc._configs[model].inputs[0].name
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        for split, workers in kinds:  # first requests (cold), not counted
            await svc.infer(model, {name: x}, workers=workers, split=split)
        for _ in range(warm):
            for split, workers in kinds:
                a = await svc.infer(model, {name: x}, workers=workers, split=split)
                answers[split, workers].append(a)
    finally:
        await svc.close()
    return [_row(model, k, plans[k], answers[k]) for k in kinds]


def _row(model: str, kind, plan, answers: list) -> dict:
    lat = sorted(a.total_ms for a in answers)
    loads = [getattr(a.report, "weights_loaded", None) for a in answers]
    return {
        "model": model,
        "kind": f"{kind[0]}:{kind[1]}",
        "plan_id": plan.plan_id,
        "split_stages": sum(1 for s in plan.stages if s.split != "serial"),
        "warm_p50_ms": statistics.median(lat),
        "warm_p90_ms": lat[int(0.9 * (len(lat) - 1))],
        "requests_loading_weights": None if None in loads else sum(1 for n in loads if n),
        "requests": len(answers),
        "load_1min": os.getloadavg()[0],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vgg11")
    p.add_argument("--kinds", default="auto:1,auto:2", help="split:workers, comma separated")
    p.add_argument("--warm", type=int, default=10, help="warm requests per kind")
    p.add_argument("--memory-mb", type=int, default=2048)
    p.add_argument("--repo", type=Path, default=None, help="model repository (with profile.json)")
    p.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/burst_alternate.json")
    args = p.parse_args()
    import torch

    from vmpool.export import export_zoo

    torch.set_num_threads(1)
    work = work_dir("tidegate-alt-")
    repo = args.repo or work / "models"
    if not (repo / args.model / "model.pt2").is_file():
        export_zoo(args.model, repo, max_batch_size=1)
    t0 = time.time()
    rows = asyncio.run(
        run(repo, work / args.model, args.model, _kinds(args.kinds), args.warm, args.memory_mb)
    )
    print(f"{time.strftime('%H:%M:%S', time.gmtime(t0))} UTC  {args.model}  {args.memory_mb} MB")
    for r in rows:
        loading = r["requests_loading_weights"]
        print(
            f"  {r['kind']:<8} plan {r['plan_id']}  split stages {r['split_stages']}  warm p50 "
            f"{r['warm_p50_ms']:6.1f} ms  p90 {r['warm_p90_ms']:6.1f} ms  loading weights "
            f"{'-' if loading is None else loading}/{r['requests']}  load {r['load_1min']:.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
