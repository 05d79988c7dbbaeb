# size: one benchmark script (shape, configs, side-by-side run, accounting, table, verdicts) read top to bottom
"""Autoscaling end to end: real gateways, local VM pools (20 s boots), local function runtimes
and the ``delay`` model, under a steady load that one replica carries at half its capacity, a
step to 4x for 60 s, then back. One run, four policy pairs, the same seeded arrivals for each:

    vm-only + target, threshold + target, vm-only + knative, slo-aware + predictive

The pairs run side by side (one gateway each, started and warmed together, each load in its own
process), so they share the machine's conditions and the run takes minutes; the pair whose
spills start functions cold (threshold) runs its load after the others finished, so its cold
starts' CPU does not starve them. Per pair: SLO attainment (overall and during the step),
p50/p99, requests per path, VM-seconds, function GB-s, cost per 1,000 requests and the replica
count over time; and the cost of VMs sized for the step's peak, kept the whole run.

    python ops/bench/autoscale_e2e.py [--quick] [--only NAME ...] [--json OUT] [--keep-logs]

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
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ops.bench.autoscale_load import Run, drive_process  # noqa: E402
from ops.bench.procs import start, stop, wait_http  # noqa: E402
from policies.costs import PriceTable  # noqa: E402
from vmpool.procs import free_port  # noqa: E402

TARGET = {"policy": "target", "target_in_flight_per_replica": 4, "scale_in_cooldown_s": 30}
WARM_FUNCTIONS = 8  # the predictive pair's standing pool: the step's burst concurrency
SCENARIOS = {
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
LATE = {"threshold+target"}  # cold-start spills: its load runs after the others'


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


def summarize(
    name: str, run: Run, before: dict, after: dict, shape: Shape, prices: PriceTable
) -> dict:
    recs = run.records
    lat = np.array([r.latency_ms for r in recs if r.status == 200])
    ok_in_slo = [r.status == 200 and r.latency_ms <= shape.slo_ms for r in recs]
    step = [
        ok
        for r, ok in zip(recs, ok_in_slo, strict=True)
        if shape.steady_s <= r.sent_s < shape.steady_s + shape.step_s
    ]
    vm_s = 0.0
    for (t0, *_), (t1, _d, ready, booting, draining) in zip(
        run.samples, run.samples[1:], strict=False
    ):
        vm_s += (ready + booting + draining) * (t1 - t0)  # billed from boot request to stop
    billed_s = (
        after["tidegate_function_billed_seconds_total"]
        - before["tidegate_function_billed_seconds_total"]
    )
    warm_usd = (
        after["tidegate_warm_functions_cost_usd_total"]
        - before["tidegate_warm_functions_cost_usd_total"]
    )
    gb_s = billed_s * shape.memory_mb / 1024.0
    fn_usd = sum(r.cost_usd for r in recs if r.path == "burst")
    vm_usd = vm_s * prices.vm_usd_per_hour / 3600.0
    cost = vm_usd + fn_usd + warm_usd
    paths: dict[str, int] = {}
    errors: dict[str, int] = {}
    for r in recs:
        key = r.path if r.status == 200 else f"error {r.status}"
        paths[key] = paths.get(key, 0) + 1
        if r.status != 200:
            what = f"{r.status} {r.error}"
            errors[what] = errors.get(what, 0) + 1
    return {
        "policy": name,
        "requests": len(recs),
        "slo_ms": shape.slo_ms,
        "slo_attainment": sum(ok_in_slo) / max(len(recs), 1),
        "step_slo_attainment": sum(step) / max(len(step), 1),
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else math.nan,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else math.nan,
        "paths": paths,
        "errors": errors,
        "error_sent_s": [round(r.sent_s, 1) for r in recs if r.status != 200],
        "vm_seconds": vm_s,
        "function_gb_s": gb_s,
        "vm_usd": vm_usd,
        "function_usd": fn_usd,
        "warm_usd": warm_usd,
        "cost_usd": cost,
        "cost_per_1000_usd": cost / max(len(recs), 1) * 1000,
        "replicas": [list(map(lambda v: round(v, 1), s)) for s in run.samples],
        "timeline": timeline(run.samples),
        "per_10s": per_bucket(recs, shape.slo_ms),
    }


def per_bucket(recs: list, slo_ms: float, every_s: float = 10.0) -> list[dict]:
    """Per ``every_s`` of sending: requests by path, their p99 and the share within the SLO."""
    out = []
    for k in range(int(max((r.sent_s for r in recs), default=0) // every_s) + 1):
        b = [r for r in recs if k * every_s <= r.sent_s < (k + 1) * every_s]
        row: dict = {"t_s": k * every_s, "requests": len(b)}
        for path in ("vm", "burst"):
            lat = [r.latency_ms for r in b if r.path == path and r.status == 200]
            row[path] = len(lat)
            row[f"{path}_p99_ms"] = round(float(np.percentile(lat, 99)), 1) if lat else None
        ok = sum(r.status == 200 and r.latency_ms <= slo_ms for r in b)
        row["in_slo"] = round(ok / max(len(b), 1), 4)
        out.append(row)
    return out


def timeline(samples: list[tuple], every_s: float = 10.0) -> str:
    """VMs up or booting, the most in each ``every_s`` of the run: one digit per bucket."""
    buckets: dict[int, int] = {}
    for t, _desired, ready, booting, _draining in samples:
        k = int(t // every_s)
        buckets[k] = max(buckets.get(k, 0), int(ready + booting))
    return "".join(str(min(buckets.get(k, 0), 9)) for k in range(max(buckets, default=-1) + 1))


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


def run_all(names: list[str], repo: Path, work: Path, shape: Shape, times, body) -> list[dict]:
    """Start every pair's gateway, wait until all are ready and warm, then load them side by
    side (the late ones after the others' run); one process per load."""
    gateways = {n: start_gateway(n, repo, work, shape) for n in names}
    try:
        for name, (proc, url) in gateways.items():
            wait_http(url + "/v2/health/ready", proc, timeout_s=600)
            if SCENARIOS[name][1].get("min_warm_functions"):
                print(f"  {name}: warm pool up after {wait_warm(url, WARM_FUNCTIONS):.0f} s")
        print(f"  all ready; load average {os.getloadavg()[0]:.2f}", flush=True)
        t0 = time.time() + 5.0  # every load starts on the same second
        # spawn, not fork: this process has run event loops whose resolver threads a fork
        # would copy mid-lock
        with ProcessPoolExecutor(len(names), mp_context=get_context("spawn")) as pool:
            futures = {
                n: pool.submit(
                    drive_process,
                    url,
                    times,
                    body,
                    t0 + (shape.steady_s + shape.step_s if n in LATE else 0.0),
                )
                for n, (_, url) in gateways.items()
            }
            results = {n: f.result() for n, f in futures.items()}
        print(f"  done; load average {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        for proc, _ in gateways.values():
            stop(proc)
    return [summarize(n, *results[n], shape, PriceTable()) for n in names]


def peak_sized(shape: Shape, requests: int, prices: PriceTable) -> dict:
    vms = math.ceil(shape.steady_rate * 4.0 / (shape.capacity_per_s * 0.7))
    cost = vms * shape.duration_s * prices.vm_usd_per_hour / 3600.0
    return {"vms": vms, "cost_usd": cost, "cost_per_1000_usd": cost / max(requests, 1) * 1000}


def print_table(rows: list[dict], peak: dict, shape: Shape) -> None:
    print(
        f"\nsteady {shape.steady_rate:.1f} req/s (half of one replica), step to "
        f"{4 * shape.steady_rate:.1f} req/s for {shape.step_s:g} s; SLO {shape.slo_ms:g} ms; "
        f"boot delay {shape.boot_delay_s:g} s"
    )
    print(
        f"{'policy':<22}{'reqs':>6}{'SLO%':>8}{'step%':>8}{'p50ms':>8}{'p99ms':>8}"
        f"{'vm':>6}{'burst':>6}{'err':>5}{'VM-s':>6}{'GB-s':>7}{'warm$':>9}{'$/1k':>10}"
        f"  VMs per {10:g} s"
    )
    for r in rows:
        err = sum(v for k, v in r["paths"].items() if k.startswith("error"))
        print(
            f"{r['policy']:<22}{r['requests']:>6}{100 * r['slo_attainment']:>8.2f}"
            f"{100 * r['step_slo_attainment']:>8.2f}{r['p50_ms']:>8.0f}{r['p99_ms']:>8.0f}"
            f"{r['paths'].get('vm', 0):>6}{r['paths'].get('burst', 0):>6}{err:>5}"
            f"{r['vm_seconds']:>6.0f}{r['function_gb_s']:>7.1f}{r['warm_usd']:>9.5f}"
            f"{r['cost_per_1000_usd']:>10.6f}  {r['timeline']}"
        )
    print(
        f"{'VMs for the peak':<22}{'':>6}{'':>8}{'':>8}{'':>8}{'':>8}{'':>6}{'':>6}{'':>5}"
        f"{peak['vms'] * shape.duration_s:>6.0f}{0:>7.1f}{0:>9.5f}"
        f"{peak['cost_per_1000_usd']:>10.6f}  {str(peak['vms']) * len(rows[0]['timeline'] if rows else '')}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short phases and 8 s boots (smoke)")
    ap.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="a subset of the pairs")
    ap.add_argument("--json", default=str(ROOT / "ops/bench/results/autoscale_e2e.json"))
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
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
    ).encode()
    load_before = os.getloadavg()
    print(f"{len(times)} requests over {shape.duration_s:g} s per pair: {', '.join(names)}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    work, rows = Path(tempfile.mkdtemp(prefix="tidegate-autoscale-")), []
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


def print_errors(rows: list[dict], kept: Path | None) -> None:
    """Per pair: failed requests by status and answer, with when they were sent."""
    for r in rows:
        if not r["errors"]:
            continue
        sent = r["error_sent_s"]
        print(
            f"{r['policy']}: {sum(r['errors'].values())} errors, sent {min(sent):.0f}-{max(sent):.0f} s"
        )
        for what, n in sorted(r["errors"].items(), key=lambda kv: -kv[1]):
            print(f"  {n:>5}  {what[:160]}")
    if kept is not None:
        print(f"gateway, replica and function-runtime logs: {kept}")


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
