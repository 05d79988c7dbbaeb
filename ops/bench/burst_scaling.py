"""Partitioned fork-join latency on the local function runtime vs. the whole model in one function.

For each model at batch 1 and each worker count (and "one function": the whole model in the
master), one function runtime serves each config's first (cold) request, then the configs' warm
requests in turns, so the speedups compare requests made under the same host load. Reported:
latency, the share of wall time spent in communication (invocations, transfers, stitching), and
billed GB-seconds (master + workers). Prints a table and writes JSON (ops/bench/results/burst_scaling.json).

    python ops/bench/burst_scaling.py [--models resnet18,resnet50,vgg11] [--workers 1,2,4] [--warm 5]
    python ops/bench/burst_scaling.py --models resnet18 --workers 2 --transports inline,dir,s3,sqs
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


def gb_s(answer) -> float:
    return sum(ms / 1000.0 * mb / 1024.0 for ms, mb in answer.invocations)


def round_overhead_ms(answer) -> float | None:
    """A fork-join round's cost beyond its slowest leg's compute, averaged over the request's
    split stages (sends, invocation, hand-offs, receives, stitching); None with no split."""
    extra = [
        s.wall_ms - max(s.worker_compute_ms)
        for s in answer.report.stages
        if s.workers > 1 and s.worker_compute_ms
    ]
    return statistics.mean(extra) if extra else None


def round_parts_ms(answers) -> dict | None:
    """Where a round's overhead goes, median over the warm answers' split stages: the hop to a
    remote leg's handler and back (the function runtime's relay), the tensor transfers at each
    end, how late the master's own leg starts (its sends, then the wait for its requests to go
    out: ``own_delay``), and how long the master then waits on its remote legs (``own_wait``
    under ~1 ms: its own leg was the slowest; then hop_out holds the remote's wait); None with
    no split."""
    parts: dict[str, list[float]] = {
        "hop_in": [],
        "hop_out": [],
        "master_transfer": [],
        "worker_transfer": [],
        "own_start": [],
        "own_delay": [],
        "own_wait": [],
    }
    for a in answers:
        for s in a.report.stages:
            if s.workers < 2 or not s.hop_in_ms:
                continue
            parts["hop_in"].append(max(s.hop_in_ms))
            parts["hop_out"].append(max(s.hop_out_ms))
            parts["master_transfer"].append(s.master_transfer_ms)
            parts["worker_transfer"].append(max(s.worker_transfer_ms))
            parts["own_start"].append(s.own_start_ms)
            parts["own_delay"].append(s.own_start_ms - s.send_ms)
            parts["own_wait"].append(s.own_wait_ms)
    if not parts["hop_in"]:
        return None
    return {k: round(statistics.median(v), 2) for k, v in parts.items()}


def load_average() -> float:
    return os.getloadavg()[0]


def _service(repo: Path, data: Path, workers: int, memory_mb: int) -> BurstService:
    return BurstService(
        repo,
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(data / "objects")},
        memory_mb=memory_mb,
        concurrency=max(4, workers + 2),
        keep_alive_s=600,
        function_timeout_s=600,
        log_dir=data / "logs",
    )


async def run_model(
    repo: Path,
    data: Path,
    model: str,
    configs: list[tuple[str, int]],
    warm: int,
    memory_mb: int,
    x: np.ndarray,
    reference: np.ndarray,
) -> list[dict]:
    """Every (split, workers) config of one model on one function runtime, its warm requests
    taken in turns (one request per config per turn): the host drifts 20-30 % over seconds, and
    configs run one after another each saw a different host (VGG-11 2 workers: 1.26x and 1.39x
    in two runs minutes apart). The first request of each config is its cold one (only the
    first config's master starts cold: ``cold_starts`` says how many instances did)."""
    svc = _service(repo, data, max(w for _, w in configs), memory_mb)
    await svc.start()
    try:
        name, prepare_s, first = None, {}, {}
        for split, workers in configs:
            t0 = time.perf_counter()
            await svc.plan_for(model, workers, 1, split)  # weight slices written once, not timed
            prepare_s[split, workers] = time.perf_counter() - t0
            name = svc._configs[model].inputs[0].name
            first[split, workers] = await svc.infer(model, {name: x}, workers=workers, split=split)
        answers: dict = {c: [] for c in configs}
        for _ in range(warm):
            for split, workers in configs:
                a = await svc.infer(model, {name: x}, workers=workers, split=split)
                answers[split, workers].append(a)
    finally:
        await svc.close()
    return [_row(model, c, first[c], answers[c], reference, prepare_s[c]) for c in configs]


def _row(model: str, config, cold, warm_answers: list, reference, prepare_s: float) -> dict:
    split, workers = config
    out = next(iter(cold.outputs.values()))
    lat = [a.total_ms for a in warm_answers]
    share = [a.report.communication_share for a in warm_answers]
    rounds = [r for r in map(round_overhead_ms, warm_answers) if r is not None]
    splits = sum(1 for s in warm_answers[0].report.stages if s.workers > 1) if warm_answers else 0
    return {
        "model": model,
        "workers": workers if split != "none" else 0,
        "config": "one function" if split == "none" else f"{workers} workers",
        "cold_ms": cold.total_ms,
        "cold_starts": cold.cold_starts,
        "warm_p50_ms": statistics.median(lat),
        "warm_min_ms": min(lat),
        "comm_share_warm": statistics.median(share),
        "comm_share_cold": cold.report.communication_share,
        "billed_gb_s_warm": statistics.median(gb_s(a) for a in warm_answers),
        "billed_gb_s_cold": gb_s(cold),
        "invocations": len(cold.invocations),
        "split_stages": splits,
        "round_overhead_ms": statistics.median(rounds) if rounds else None,
        "round_parts_ms": round_parts_ms(warm_answers),
        "load_1min": load_average(),
        "max_abs_diff": float(np.abs(out - reference).max()),
        "prepare_s": prepare_s,
    }


def _profile_source(repo: Path, model: str) -> str:
    from burst.planning import load_profile

    return load_profile(repo, model).source


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="resnet18,resnet50,vgg11")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--warm", type=int, default=5, help="warm requests per configuration")
    ap.add_argument("--memory-mb", type=int, default=2048, help="memory size of every function")
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/burst_scaling.json")
    ap.add_argument(
        "--repo",
        type=Path,
        help="model repository to use (its REPO/MODEL/profile.json from `tidegate profile` "
        "plans the splits; default: export into a temp dir, planned by the reference profile)",
    )
    ap.add_argument(
        "--measure-profile",
        action="store_true",
        help="run `tidegate profile` for each model first (same memory size) and plan with it",
    )
    ap.add_argument(
        "--transports",
        help="compare tensor transports instead (subset of inline,dir,s3,sqs; "
        "ops/bench/burst_transports.py)",
    )
    return ap.parse_args()


def _print_table(rows: list[dict]) -> None:
    """The summary table; adds each row's speedup over its model's one-function baseline."""
    print()
    print(
        f"{'model':<9} {'config':<13} {'cold ms':>8} {'warm p50':>9} {'vs one fn':>9} "
        f"{'comm':>6} {'GB-s warm':>9} {'GB-s cold':>9} {'inv':>4} {'rounds':>6} "
        f"{'ms/round':>8} {'load':>5}"
    )
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"] and b["workers"] == 0)
        r["speedup_vs_one_function"] = base["warm_p50_ms"] / r["warm_p50_ms"]
        print(
            f"{r['model']:<9} {r['config']:<13} {r['cold_ms']:8.0f} {r['warm_p50_ms']:9.0f} "
            f"{r['speedup_vs_one_function']:8.2f}x {r['comm_share_warm']:6.1%} "
            f"{r['billed_gb_s_warm']:9.3f} {r['billed_gb_s_cold']:9.3f} {r['invocations']:>4} "
            f"{r['split_stages']:>6} {_num(r['round_overhead_ms']):>8} {r['load_1min']:5.1f}"
        )


def _print_round_parts(rows: list[dict]) -> None:
    """Per split configuration, the median round's parts (ms): ``round_parts_ms``."""
    split = [r for r in rows if r.get("round_parts_ms")]
    if not split:
        return
    names = list(split[0]["round_parts_ms"])
    print("\nround parts, ms (median over split stages): " + ", ".join(names))
    for r in split:
        parts = r["round_parts_ms"]
        print(f"{r['model']:<9} {r['config']:<13} " + " ".join(f"{parts[n]:6.1f}" for n in names))


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def main() -> int:
    args = _parse_args()
    if args.transports:
        from ops.bench.burst_transports import from_scaling_args

        return from_scaling_args(args)
    import torch

    from vmpool.artifact import load_artifact
    from vmpool.export import export_zoo

    torch.set_num_threads(1)
    work = work_dir("tidegate-burst-")
    rows = []
    for model in args.models.split(","):
        repo = args.repo or work / "models"
        if not (repo / model / "model.pt2").is_file():
            print(f"exporting {model} ...", flush=True)
            export_zoo(model, repo, max_batch_size=1)
        if args.measure_profile:
            from ops.bench.plan_accuracy import measure_profile

            workers = [int(w) for w in args.workers.split(",")]
            measure_profile(repo, model, args.memory_mb, workers)
        print(f"{model}: planned with {_profile_source(repo, model)}", flush=True)
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        with torch.inference_mode():
            ref = load_artifact(repo, model).load_module()(torch.from_numpy(x)).numpy()
        configs = [("none", 1)] + [("auto", int(w)) for w in args.workers.split(",")]
        model_rows = asyncio.run(
            run_model(repo, work / model, model, configs, args.warm, args.memory_mb, x, ref)
        )
        for row in model_rows:
            rows.append(row)
            print(
                f"  {model:<9} {row['config']:<13} cold {row['cold_ms']:8.0f} ms  warm p50 "
                f"{row['warm_p50_ms']:7.0f} ms  comm {row['comm_share_warm']:5.1%}  "
                f"{row['billed_gb_s_warm']:.3f} GB-s  diff {row['max_abs_diff']:.1e}",
                flush=True,
            )
    _print_table(rows)
    _print_round_parts(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"memory_mb": args.memory_mb, "batch": 1, "rows": rows}, indent=2)
    )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
