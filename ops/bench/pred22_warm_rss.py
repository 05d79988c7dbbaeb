"""What a warm function instance holds between requests: the resident memory of the local
runtime's function instances after each request, next to the request's latency and the plan's
memory estimate (``burst.plan_memory``). Through the burst service (the gateway's backend) on
the local function runtime, one function (``workers`` 1), batch ``--batch``.

    flock /work/coord/bench.lock python ops/bench/pred22_warm_rss.py [--model mobilenet_v2]
        [--batch 8] [--requests 8] [--memory-mb 1024] [--repo REPO]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def instance_rss_mb() -> dict[int, tuple[float, float]]:
    """pid -> (resident MB now, peak resident MB so far) of every function instance this
    process's runtime started."""
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if "burst.faas.instance" in " ".join(p.cmdline()):
                with open(f"/proc/{p.pid}/status") as f:
                    peak = next(int(v.split()[1]) for v in f if v.startswith("VmHWM:"))
                out[p.pid] = (p.memory_info().rss / 2**20, peak / 1024)
        except (psutil.Error, OSError, StopIteration):
            continue
    return out


async def run(args) -> None:
    from burst.service import BurstService

    data = Path(args.work)
    svc = BurstService(
        args.repo,
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(data / "objects")},
        memory_mb=args.memory_mb,
        keep_alive_s=600,
        function_timeout_s=600,
        log_dir=data / "logs",
    )
    await svc.start()
    try:
        plan = await svc.plan_for(args.model, 1, args.batch)  # loads the model and its config
        from burst import plan_memory as pm

        peak = pm.master_peak_bytes(svc._graphs[args.model], plan)
        weights = plan.totals.get("master_weight_bytes", 0)
        need = pm.FUNCTION_RUNTIME_MB + (weights + pm.TEMPORARIES_FACTOR * peak) / 2**20
        print(f"plan {plan.plan_id}: the master's memory estimate {need:.0f} MB")
        name = svc._configs[args.model].inputs[0].name
        shape = [args.batch if d == -1 else d for d in svc._configs[args.model].inputs[0].shape]
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        rss, lat = [], []
        for i in range(args.requests):
            t0 = time.perf_counter()
            await svc.infer(args.model, {name: x}, workers=1)
            lat.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.3)  # the instance trims after it answered
            now = instance_rss_mb()
            rss.append(max((r for r, _ in now.values()), default=0.0))
            shown = ", ".join(f"{r:.0f} (peak {p:.0f})" for r, p in sorted(now.values()))
            print(f"request {i}: {lat[-1]:7.1f} ms; instances' RSS MB: {shown}")
        warm = rss[1:]
        print(
            f"{args.model} batch {args.batch}, {args.memory_mb} MB: warm RSS {min(warm):.0f}-"
            f"{max(warm):.0f} MB; warm latency p50 {statistics.median(lat[1:]):.1f} ms; "
            f"load {os.getloadavg()[0]:.1f}"
        )
    finally:
        await svc.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--memory-mb", type=int, default=1024)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--work", default="/tmp/tidegate-warm-rss")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.1f}")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
