"""One warm function size running a model's plans in turn: does any instance go over its memory?

Runs ``--sequence`` (worker counts, one request each, in that order) through the burst service
on the local function runtime, as a gateway does for requests with ``X-Tidegate-Workers``, and
prints after each request every function instance (its pid: a new pid is a fresh instance),
its resident memory and its peak in that request (the runtime's watchdog resets the peak per
invocation). Before session 23 a warm 1152
MB VGG-16 master was OOM-killed on ``--sequence 1,4,2,1``.

    flock /work/coord/bench.lock python ops/bench/burst23_plan_switch.py --repo REPO
        [--model vgg16] [--memory-mb 1152] [--sequence 1,4,2,1,4,1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from burst.service import BurstService, BurstUnavailable  # noqa: E402


def instances() -> str:
    """Each function instance under this process: name, resident / peak MB."""
    out = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            name = proc.environ().get("AWS_LAMBDA_FUNCTION_NAME")
            status = Path(f"/proc/{proc.pid}/status").read_text()
            hwm = int(next(s for s in status.splitlines() if s.startswith("VmHWM")).split()[1])
        except (psutil.Error, OSError, StopIteration):
            continue
        if name:
            out.append(f"{name} (pid {proc.pid}) {proc.memory_info().rss >> 20}/{hwm >> 10} MB")
    return ", ".join(sorted(out))


async def run(args, data: Path) -> int:
    svc = BurstService(
        args.repo,
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(data / "objects")},
        memory_mb=args.memory_mb,
        concurrency=max(args.sequence) + 4,
        keep_alive_s=600,
        function_timeout_s=600,
        log_dir=data / "logs",
        max_workers=max(max(args.sequence), 2),
    )
    await svc.start()
    failed = 0
    try:
        await svc.plan_for(args.model, args.sequence[0], 1)
        spec = svc._configs[args.model].inputs[0]
        shape = [1 if d == -1 else d for d in spec.shape]
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
        for workers in args.sequence:
            t0 = time.perf_counter()
            try:
                await svc.infer(args.model, {spec.name: x}, workers=workers)
                what = f"ok {(time.perf_counter() - t0) * 1000:.0f} ms"
            except BurstUnavailable as exc:
                failed += 1
                what = f"FAILED {exc}"
            print(f"x{workers:<3} {what}\n     resident/peak: {instances()}", flush=True)
    finally:
        await svc.close()
    print(f"{failed} of {len(args.sequence)} failed; load average {os.getloadavg()[0]:.1f}")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, required=True, help="a repository with the model")
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--memory-mb", type=int, default=1152)
    ap.add_argument("--sequence", default="1,4,2,1,4,1", help="worker counts, in turn")
    args = ap.parse_args()
    args.sequence = [int(v) for v in args.sequence.split(",")]
    with tempfile.TemporaryDirectory(prefix="plan-switch-") as tmp:
        return asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
