"""Autoscaling end to end: real gateways, local VM pools (20 s boots), local function runtimes
and the ``delay`` model, under a steady load that one replica carries at half its capacity, a
step to 4x for 60 s, then back. One run, four policy pairs, the same seeded arrivals for each:

    vm-only + target, threshold + target, vm-only + knative, slo-aware + predictive

The pairs run one after another, each on its own gateway, pool and function runtime, fully taken
down before the next starts (side by side, their VM boots shared the two cores: 20 s boots took
55-65 s); one table compares them. Per pair: SLO attainment (overall and during the step),
p50/p99, requests per path, VM-seconds, function GB-s, cost per 1,000 requests, the replica
count over time and where the step's misses come from (path, routing reason, cold start, when);
and the cost of VMs sized for the step's peak, kept the whole run.

    python ops/bench/autoscale_e2e.py [--quick] [--only NAME ...] [--json OUT] [--keep-logs]
                                      [--set NAME.KEY=VALUE ...]

A failed request (or a failed run) keeps the gateway, replica and function-runtime logs in
OUT-logs/ next to the JSON and prints the errors by status and answer per pair.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ops.bench.procs import work_dir  # noqa: E402

from ops.bench.autoscale_load import drive_process  # noqa: E402
from ops.bench.autoscale_report import (  # noqa: E402
    ledger_reasons,
    print_errors,
    print_table,
    summarize,
)
from ops.bench.procs import start, stop, wait_http  # noqa: E402
from policies.costs import PriceTable  # noqa: E402
from vmpool.procs import free_port  # noqa: E402

TARGET = {"policy": "target", "target_in_flight_per_replica": 4, "scale_in_cooldown_s": 30}
WARM_FUNCTIONS = 8  # the predictive pair's standing pool: the step's burst concurrency
SCENARIOS: dict[str, tuple[str, dict]] = {
    "vm-only+target": ("vm-only", TARGET),
    "threshold+target": ("threshold", TARGET),
    "knative": ("vm-only", {"policy": "knative", "target_in_flight_per_replica": 4}),
    "slo-aware+predictive": (
        "slo-aware",
        {
            "policy": "predictive",
            "base_quantile": 0.5,
            # functions take the forecast's error, so VMs may run hotter and give capacity
            # back sooner than a VM-only fleet can
            "target_utilization": 0.8,
            "scale_in_cooldown_s": 15,
            # beyond the standing pool, instances are held (and billed) only while the forecast
            # says the ready VMs will be short over the boot horizon, sized from the live burst
            # path. A step cannot be forecast, and in its boot storm (11 model servers of ~9
            # CPU-s each on 2 cores: 55-65 s boots) a fresh function instance took over 60 s
            # to start. Measured (load 1.4-5): standing pool 0 -> 11 % of the step in SLO,
            # $0.0235/1k; 6 -> 96.4 %, $0.0319/1k; 8 (an earlier run, fixed sizing) -> 99.1 %,
            # $0.0332/1k; VMs for the peak $0.0313/1k
            "min_warm_functions": WARM_FUNCTIONS,
            "max_warm_functions": 16,
        },
    ),
}


@dataclass
class Shape:
    # a batch of n rows waits 1000 + 100 n ms: 8 rows in 1.8 s, so one replica carries 4.4 req/s.
    # Slow on purpose: at 5x the rate (200 + 20 n ms) the burst path's own work (HTTP hops,
    # tensors, invocations: ~50 ms of CPU a request) overloaded the shared 2-core host
    delay_ms: float = 1000.0
    per_item_ms: float = 100.0
    max_batch: int = 8
    boot_delay_s: float = 20.0
    steady_s: float = 60.0
    step_s: float = 60.0
    after_s: float = 60.0
    memory_mb: int = 512

    @property
    def capacity_per_s(self) -> float:  # rows one replica serves at full batches
        return self.max_batch * 1000.0 / (self.delay_ms + self.per_item_ms * self.max_batch)

    @property
    def steady_rate(self) -> float:
        return self.capacity_per_s / 2.0

    @property
    def slo_ms(self) -> float:  # what `tidegate export delay` writes into the config
        return 4.0 * (self.delay_ms + self.per_item_ms * self.max_batch)

    @property
    def duration_s(self) -> float:
        return self.steady_s + self.step_s + self.after_s

    def rate_at(self, t: float) -> float:
        in_step = self.steady_s <= t < self.steady_s + self.step_s
        return self.steady_rate * (4.0 if in_step else 1.0)


def arrivals(shape: Shape, seed: int = 7) -> np.ndarray:
    """Poisson arrivals with the piecewise rate (thinning of the peak-rate process)."""
    rng = np.random.default_rng(seed)
    peak = shape.steady_rate * 4.0
    times = np.cumsum(rng.exponential(1.0 / peak, int(peak * shape.duration_s * 1.3)))
    times = times[times < shape.duration_s]
    keep = rng.random(len(times)) < np.array([shape.rate_at(t) / peak for t in times])
    return times[keep]


def write_config(path: Path, routing: str, scaling: dict, shape: Shape) -> None:
    lines = [
        f'routing_policy = "{routing}"',
        "spill_outstanding_per_replica = 8",
        "[vm]",
        f"boot_delay_s = {shape.boot_delay_s}",
        "max_queue_delay_ms = 5.0",
        "health_interval_s = 0.5",
        "[burst]",
        "default_workers = 1",
        "max_workers = 2",
        f"memory_mb = {shape.memory_mb}",
        "concurrency = 24",
        "keep_alive_s = 600.0",
        "timeout_s = 30.0",
        "[autoscaling]",
        "min_replicas = 1",
        "max_replicas = 4",
        "tick_s = 1.0",
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in scaling.items()]
    path.write_text("\n".join(lines) + "\n")


def start_gateway(name: str, repo: Path, work: Path, shape: Shape):
    routing, scaling = SCENARIOS[name]
    cfg = work / f"{name}.toml"
    write_config(cfg, routing, scaling, shape)
    port = free_port()
    args = [sys.executable, "-m", "ops", "serve", "--config", str(cfg), "--repo", str(repo)]
    args += ["--data-dir", str(work / name), "--port", str(port), "--grpc-port", "-1"]
    return start(args, work / f"{name}.log"), f"http://127.0.0.1:{port}"


async def _paths(url: str) -> dict:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/admin/paths") as r:
        return await r.json()


def wait_warm(url: str, instances: int, timeout_s: float = 300.0) -> float:
    """Until the gateway's standing warm pool is up (the control loop prewarms it at start)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if (asyncio.run(_paths(url))["burst"]["warm_instances"] or 0) >= instances:
            return time.monotonic() - t0
        time.sleep(1.0)
    raise RuntimeError(f"{url}: the warm pool of {instances} did not come up in {timeout_s:g} s")


def run_pair(name: str, repo: Path, work: Path, shape: Shape, times, body) -> dict:
    """One pair on its own gateway, pool and function runtime: start it, wait until it is
    ready (and its standing warm pool up), load it, take it all down, read its ledger."""
    proc, url = start_gateway(name, repo, work, shape)
    try:
        wait_http(url + "/v2/health/ready", proc, timeout_s=600)
        warm = SCENARIOS[name][1].get("min_warm_functions", 0)
        if warm:
            print(f"  {name}: warm pool up after {wait_warm(url, warm):.0f} s")
        load = os.getloadavg()[0]
        print(f"  {name}: ready; load average {load:.2f}", flush=True)
        run, before, after = drive_process(url, times, body)
    finally:
        stop(proc)
    row = summarize(
        name, run, before, after, shape, PriceTable(), ledger_reasons(work / name / "ledger.sqlite")
    )
    row["load_average"] = {"start": load, "end": os.getloadavg()[0]}
    print(f"  {name}: done; load average {os.getloadavg()[0]:.2f}", flush=True)
    return row


def run_all(names: list[str], repo: Path, work: Path, shape: Shape, times, body) -> list[dict]:
    """The pairs one after another, each torn down before the next starts: a pair's VM boots
    and cold starts never share the two cores with another's (side by side, 11 model servers
    booting at once turned 20 s boots into 55-65 s)."""
    return [run_pair(n, repo, work, shape, times, body) for n in names]


def peak_sized(shape: Shape, requests: int, prices: PriceTable) -> dict:
    vms = math.ceil(shape.steady_rate * 4.0 / (shape.capacity_per_s * 0.7))
    cost = vms * shape.duration_s * prices.vm_usd_per_hour / 3600.0
    return {"vms": vms, "cost_usd": cost, "cost_per_1000_usd": cost / max(requests, 1) * 1000}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short phases and 8 s boots (smoke)")
    ap.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="a subset of the pairs")
    ap.add_argument("--json", default=str(ROOT / "ops/bench/results/autoscale_e2e.json"))
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="override one [autoscaling] key of a pair, e.g. "
        "slo-aware+predictive.min_warm_functions=0 (VALUE is JSON)",
    )
    ap.add_argument(
        "--keep-logs",
        action="store_true",
        help="copy the gateway and runtime logs next to the JSON",
    )
    args = ap.parse_args(argv)
    shape = (
        Shape(boot_delay_s=8.0, steady_s=20.0, step_s=30.0, after_s=20.0) if args.quick else Shape()
    )
    times = arrivals(shape)
    names = args.only or list(SCENARIOS)
    for item in args.set:
        key, _, value = item.partition("=")
        name, _, field = key.rpartition(".")
        SCENARIOS[name][1][field] = json.loads(value)
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
    ).encode()
    load_before = os.getloadavg()
    print(f"{len(times)} requests over {shape.duration_s:g} s per pair: {', '.join(names)}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    work, rows = work_dir("tidegate-autoscale-"), []
    try:
        from vmpool.export import export_zoo

        options = {"delay_ms": shape.delay_ms, "per_item_ms": shape.per_item_ms}
        export_zoo("delay", work / "repo", options=options)
        rows = run_all(names, work / "repo", work, shape, times, body)
    finally:
        # a failed run or a failed request: the logs outlive the temporary directory
        failed = not rows or any(r["errors"] for r in rows)
        kept = keep_logs(work, out) if failed or args.keep_logs else None
        shutil.rmtree(work, ignore_errors=True)
    peak = peak_sized(shape, len(times), PriceTable())
    print_table(rows, peak, shape)
    print_errors(rows, kept)
    verdicts(rows, peak)
    load = {"before": load_before, "after": os.getloadavg()}
    doc = {"shape": shape.__dict__, "peak_sized": peak, "load_average": load, "rows": rows}
    doc["scenarios"] = {n: SCENARIOS[n] for n in names}
    out.write_text(json.dumps(doc, indent=1))
    print(f"load average before {load_before[0]:.2f}, after {load['after'][0]:.2f}; wrote {out}")
    return 0


def keep_logs(work: Path, out: Path) -> Path:
    """Copy every gateway, replica and function-runtime log of the run (and each gateway's
    ledger) to ``OUT-logs/`` next to the JSON, laid out as in the run's directory."""
    dest = out.with_name(out.stem + "-logs")
    shutil.rmtree(dest, ignore_errors=True)
    for path in [*work.rglob("*.log"), *work.rglob("ledger.sqlite*")]:
        target = dest / path.relative_to(work)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    print(f"logs kept in {dest}", flush=True)
    return dest


def verdicts(rows: list[dict], peak: dict) -> None:
    by = {r["policy"]: r for r in rows}
    smart, vm = by.get("slo-aware+predictive"), by.get("vm-only+target")
    if smart:
        ok = smart["step_slo_attainment"] >= 0.99
        print(f"slo-aware+predictive keeps >= 99 % within the SLO through the step: {ok}")
        cheaper = smart["cost_per_1000_usd"] < peak["cost_per_1000_usd"]
        print(f"  and costs less per 1,000 requests than VMs sized for the peak: {cheaper}")
    if vm:
        print(f"vm-only+target misses it: {vm['step_slo_attainment'] < 0.99}")


if __name__ == "__main__":
    sys.exit(main())
