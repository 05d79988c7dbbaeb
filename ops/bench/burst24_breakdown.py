"""Where a split request's time goes beyond its legs' compute, on the local function runtime.

One function runtime; per warm request of the one-function plan and of the latency-optimal
split plan (taken in turns), the request's wall time at the caller against the master's wall,
per stage: the slowest leg's compute, the master's own leg, the hops to the worker and back,
the transfers, the serial stages; and the CPU seconds each process (the caller, the runtime,
the master, each worker) spent per request, from /proc. The gap between the caller's wall and
the sum of compute is what a split costs.

    python ops/bench/burst24_breakdown.py --repo R [--model resnet50] [--workers 2] [--warm 9]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ops.bench.procs import work_dir  # noqa: E402

from burst.service import BurstService  # noqa: E402


def _procs() -> dict[str, int]:
    """The caller, the runtime and each function instance under this process: role -> pid."""
    me = psutil.Process(os.getpid())
    out = {"caller": me.pid}
    for p in me.children(recursive=True):
        try:
            name = p.environ().get("AWS_LAMBDA_FUNCTION_NAME")
        except psutil.Error:
            continue
        out[f"{name}:{p.pid}" if name else f"runtime:{p.pid}"] = p.pid
    return out


def _sched(pid: int) -> tuple[float, float]:
    """(ms on a CPU, ms runnable but waiting for one), summed over the process's threads."""
    run = wait = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                r, w, _ = (int(v) for v in f.read().split())
            run, wait = run + r, wait + w
    except (OSError, ValueError):
        pass
    return run / 1e6, wait / 1e6


def _cpu(procs: dict) -> dict[str, tuple[float, float]]:
    return {role: _sched(pid) for role, pid in procs.items()}


def _stage_rows(answer) -> list[dict]:
    rows = []
    for s in answer.report.stages:
        row = {"stage": s.index, "split": s.split, "wall": s.wall_ms, "compute": s.compute_ms}
        if s.workers > 1:
            row.update(
                legs=s.worker_compute_ms,
                hop_in=max(s.hop_in_ms or [0]),
                hop_out=max(s.hop_out_ms or [0]),
                send=s.send_ms,
                own_start=s.own_start_ms,
                own_wait=s.own_wait_ms,
                master_transfer=s.master_transfer_ms,
                worker_transfer=max(s.worker_transfer_ms or [0]),
                invoke=s.invoke_ms,
            )
        rows.append(row)
    return rows


async def run(args, data: Path, x: np.ndarray) -> dict:
    svc = BurstService(
        args.repo,
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(data / "objects")},
        memory_mb=args.memory_mb,
        concurrency=max(4, args.workers + 2),
        keep_alive_s=600,
        function_timeout_s=600,
        log_dir=data / "logs",
    )
    await svc.start()
    configs = [("none", 1), ("auto", args.workers)]
    out: dict = {c[0]: [] for c in configs}
    try:
        await svc.plan_for(args.model, 1, 1, "none")
        name = svc._configs[args.model].inputs[0].name
        for split, w in configs * 2:  # cold, then one warm each
            await svc.infer(args.model, {name: x}, workers=w, split=split)
        procs = _procs()
        for _ in range(args.warm):
            for split, w in configs:
                c0 = _cpu(procs)
                a = await svc.infer(args.model, {name: x}, workers=w, split=split)
                c1 = _cpu(procs)
                cpu = {
                    k: [round(c1[k][0] - c0[k][0], 1), round(c1[k][1] - c0[k][1], 1)] for k in c0
                }
                out[split].append(
                    {
                        "total": a.total_ms,
                        "master_wall": a.report.wall_ms,
                        # the master's own input and output hops (its comm beyond the stages')
                        "master_io": a.report.comm_ms - sum(s.comm_ms for s in a.report.stages),
                        "weights_loaded": a.report.weights_loaded,
                        "stages": _stage_rows(a),
                        "cpu_ms": cpu,
                    }
                )
    finally:
        await svc.close()
    return out


def _summary(label: str, reqs: list[dict]) -> None:
    med = statistics.median
    total = med(r["total"] for r in reqs)
    master = med(r["master_wall"] for r in reqs)
    io = med(r["master_io"] for r in reqs)
    stages = med(sum(s["wall"] for s in r["stages"]) for r in reqs)
    print(
        f"\n{label}: caller p50 {total:.1f} ms, master wall p50 {master:.1f} ms "
        f"(stages {stages:.1f}, its input+output {io:.1f}), weight loads "
        f"{max(r['weights_loaded'] for r in reqs)}"
    )
    n = len(reqs[0]["stages"])
    for i in range(n):
        st = [r["stages"][i] for r in reqs]
        line = f"  s{i} {st[0]['split']:<8} wall {med(s['wall'] for s in st):6.1f}"
        if "legs" in st[0]:
            legs = [med(s["legs"][j] for s in st) for j in range(len(st[0]["legs"]))]
            line += " legs " + "/".join(f"{v:.1f}" for v in legs)
            for k in ("hop_in", "hop_out", "send", "own_start", "own_wait", "master_transfer"):
                line += f" {k} {med(s[k] for s in st):.1f}"
        print(line)
    roles = sorted({k for r in reqs for k in r["cpu_ms"]})
    print("  cpu ms/request (on a core / waiting for one):")
    for k in roles:
        run = med(r["cpu_ms"].get(k, [0, 0])[0] for r in reqs)
        wait = med(r["cpu_ms"].get(k, [0, 0])[1] for r in reqs)
        if run > 0.05:
            print(f"    {k:<34} {run:6.1f} / {wait:6.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warm", type=int, default=9)
    ap.add_argument("--memory-mb", type=int, default=2048)
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/burst24_breakdown.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    load0 = os.getloadavg()[0]
    out = asyncio.run(run(args, work_dir("tidegate-b24-"), x))
    print(f"{args.model}, load {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    for label, reqs in out.items():
        _summary(label, reqs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
