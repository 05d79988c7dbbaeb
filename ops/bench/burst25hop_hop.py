"""What one invocation costs on the local function runtime beyond the handler's own work.

Starts ``tidegate function-runtime`` as the burst service does (its own process), with two
functions: ``noop`` (returns at once) and ``busy`` (computes for ``--busy-ms`` on its core, like
a worker leg). Per warm invocation it prints the caller's round trip, and the runtime's CPU time,
its time waiting for a core and its wake-ups (voluntary context switches) from /proc.

    python ops/bench/burst25hop_hop.py [--n 200] [--busy-ms 30]
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from burst.faas.local import LocalInvoker  # noqa: E402
from vmpool import procs  # noqa: E402

_ME = "ops.bench.burst25hop_hop"


def noop(event, context):
    return {"ok": True}


def busy(event, context):
    end = time.perf_counter() + event["ms"] / 1000.0
    n = 0
    while time.perf_counter() < end:
        n += 1
    return {"spins": n}


def _proc_counts(pid: int) -> tuple[float, float, int]:
    """(ms on a core, ms waiting for one, voluntary context switches) over its threads."""
    run = wait = switches = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                r, w, _ = (int(v) for v in f.read().split())
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        switches += int(line.split()[1])
        except (OSError, ValueError):
            continue
        run, wait = run + r, wait + w
    return run / 1e6, wait / 1e6, switches


async def _measure(invoker, pid: int, function: str, payload: bytes, n: int) -> dict:
    await invoker.invoke(function, payload)  # cold start
    await invoker.invoke(function, payload)
    trips = []
    c0, own0 = _proc_counts(pid), time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        result = await invoker.invoke(function, payload)
        trips.append((time.perf_counter() - t0) * 1000.0 - result.billing.duration_ms)
    c1, own1 = _proc_counts(pid), time.process_time()
    return {
        "caller_cpu_ms": (own1 - own0) * 1000.0 / n,
        "hop_ms_p50": statistics.median(trips),
        "hop_ms_p90": sorted(trips)[int(0.9 * len(trips))],
        "runtime_cpu_ms": (c1[0] - c0[0]) / n,
        "runtime_wait_ms": (c1[1] - c0[1]) / n,
        "runtime_wakeups": (c1[2] - c0[2]) / n,
    }


async def run(args) -> dict:
    port = procs.free_port()
    fn = f"{_ME}:{{}},memory_mb=2048,timeout_s=60"
    cmd = [sys.executable, "-m", "ops", "function-runtime", "--port", str(port)]
    cmd += ["--memory-budget-mb", "4096"]
    cmd += ["--function", "noop=" + fn.format("noop"), "--function", "busy=" + fn.format("busy")]
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await procs.spawn_healthy(cmd, endpoint + "/health", timeout_s=60, env=env)
    invoker = LocalInvoker(endpoint)
    try:
        return {
            "noop": await _measure(invoker, proc.pid, "noop", b"{}", args.n),
            f"busy {args.busy_ms} ms": await _measure(
                invoker, proc.pid, "busy", json.dumps({"ms": args.busy_ms}).encode(), args.n // 4
            ),
        }
    finally:
        await invoker.close()
        await procs.stop(proc, grace_s=5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--busy-ms", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/burst25hop_hop.json")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    out = asyncio.run(run(args))
    print(f"load {load0:.1f} -> {os.getloadavg()[0]:.1f}; per warm invocation:")
    print(
        f"  {'':<12} {'hop p50':>8} {'hop p90':>8} {'caller cpu':>10} {'rt cpu':>7}"
        f" {'rt wait':>8} {'rt wakeups':>10}"
    )
    for k, v in out.items():
        print(
            f"  {k:<12} {v['hop_ms_p50']:8.2f} {v['hop_ms_p90']:8.2f} {v['caller_cpu_ms']:10.2f}"
            f" {v['runtime_cpu_ms']:7.2f}"
            f" {v['runtime_wait_ms']:8.2f} {v['runtime_wakeups']:10.1f}"
        )
    print("  (ms; hop = the caller's round trip minus the handler's duration; cpu = on a core)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
