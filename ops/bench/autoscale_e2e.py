"""Autoscaling end to end: a real gateway, local VM pool (20 s boots), local function runtime and
the ``delay`` model, under a steady load that one replica carries at half its capacity, a step to
4x for 60 s, then back. One run, four policy pairs, same seeded arrivals for each:

    vm-only + target, threshold + target, vm-only + knative, slo-aware + predictive

Per pair: SLO attainment (overall and during the step), p50/p99, requests per path, VM-seconds,
function GB-s, cost per 1,000 requests and the replica count over time; and the cost of VMs
sized for the step's peak, kept the whole run. The load generator is aiohttp, open loop.

    python ops/bench/autoscale_e2e.py [--quick] [--only NAME ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ops.bench.autoscale_load import Record, Run, drive, scrape  # noqa: E402, F401
from ops.bench.gateway_overhead import start, stop, wait_http  # noqa: E402
from policies.costs import PriceTable  # noqa: E402
from vmpool.provisioners.local import free_port  # noqa: E402

SCENARIOS = {
    "vm-only+target": (
        "vm-only",
        {"policy": "target", "target_in_flight_per_replica": 4, "scale_in_cooldown_s": 30},
    ),
    "threshold+target": (
        "threshold",
        {"policy": "target", "target_in_flight_per_replica": 4, "scale_in_cooldown_s": 30},
    ),
    "knative": ("vm-only", {"policy": "knative", "target_in_flight_per_replica": 4}),
    "slo-aware+predictive": (
        "slo-aware",
        {
            "policy": "predictive",
            "base_quantile": 0.6,
            "target_utilization": 0.7,
            "scale_in_cooldown_s": 30,
            "min_warm_functions": 6,
            "max_warm_functions": 12,
        },
    ),
}


@dataclass
class Shape:
    delay_ms: float = 200.0  # slow enough that 2 shared cores carry the load generator, the
    per_item_ms: float = 20.0  # gateway, the replicas and the functions at these rates
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
    def slo_ms(self) -> float:
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
    cost = vm_s * prices.vm_usd_per_hour / 3600.0 + fn_usd + warm_usd
    paths: dict[str, int] = {}
    for r in recs:
        key = r.path if r.status == 200 else f"error {r.status}"
        paths[key] = paths.get(key, 0) + 1
    return {
        "policy": name,
        "requests": len(recs),
        "slo_ms": shape.slo_ms,
        "slo_attainment": sum(ok_in_slo) / max(len(recs), 1),
        "step_slo_attainment": sum(step) / max(len(step), 1),
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else math.nan,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else math.nan,
        "paths": paths,
        "vm_seconds": vm_s,
        "function_gb_s": gb_s,
        "warm_usd": warm_usd,
        "cost_usd": cost,
        "cost_per_1000_usd": cost / max(len(recs), 1) * 1000,
        "replicas": [list(map(lambda v: round(v, 1), s)) for s in run.samples],
    }


def run_scenario(
    name: str, repo: Path, work: Path, shape: Shape, times: np.ndarray, settle_s: float = 45.0
) -> dict:
    routing, scaling = SCENARIOS[name]
    cfg = work / f"{name}.toml"
    write_config(cfg, routing, scaling, shape)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / f"{name}.log"
    proc = start(
        [
            sys.executable,
            "-m",
            "ops",
            "serve",
            "--config",
            str(cfg),
            "--repo",
            str(repo),
            "--data-dir",
            str(work / name),
            "--port",
            str(port),
            "--grpc-port",
            "-1",
        ],
        log,
    )
    try:
        wait_http(url + "/v2/health/ready", proc, timeout_s=600)
        time.sleep(settle_s)  # every pair alike: control ticks run, a warm pool (if any) starts
        before = asyncio.run(scrape(url))
        run = Run()
        body = json.dumps(
            {
                "inputs": [
                    {"name": "input", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}
                ]
            }
        ).encode()
        asyncio.run(drive(url, times, body, run))
        after = asyncio.run(scrape(url))
    finally:
        stop(proc)
    return summarize(name, run, before, after, shape, PriceTable())


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
    head = (
        f"{'policy':<22}{'reqs':>6}{'SLO%':>8}{'step%':>8}{'p50ms':>8}{'p99ms':>9}"
        f"{'vm':>7}{'burst':>7}{'err':>5}{'VM-s':>8}{'GB-s':>8}{'$/1k':>11}{'maxVM':>6}"
    )
    print(head)
    for r in rows:
        err = sum(v for k, v in r["paths"].items() if k.startswith("error"))
        max_vm = max((s[1] for s in r["replicas"]), default=0)
        print(
            f"{r['policy']:<22}{r['requests']:>6}{100 * r['slo_attainment']:>8.2f}"
            f"{100 * r['step_slo_attainment']:>8.2f}{r['p50_ms']:>8.0f}{r['p99_ms']:>9.0f}"
            f"{r['paths'].get('vm', 0):>7}{r['paths'].get('burst', 0):>7}{err:>5}"
            f"{r['vm_seconds']:>8.0f}{r['function_gb_s']:>8.1f}"
            f"{r['cost_per_1000_usd']:>11.6f}{max_vm:>6}"
        )
    print(
        f"{'VMs for the peak':<22}{'':>6}{'':>8}{'':>8}{'':>8}{'':>9}{'':>7}{'':>7}{'':>5}"
        f"{peak['vms'] * shape.duration_s:>8.0f}{0:>8.1f}{peak['cost_per_1000_usd']:>11.6f}"
        f"{peak['vms']:>6}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short phases and 8 s boots (smoke)")
    ap.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="a subset of the pairs")
    ap.add_argument("--json", default=str(ROOT / "ops/bench/results/autoscale_e2e.json"))
    args = ap.parse_args(argv)
    shape = (
        Shape(boot_delay_s=8.0, steady_s=20.0, step_s=30.0, after_s=15.0) if args.quick else Shape()
    )
    times = arrivals(shape)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tidegate-autoscale-") as tmp:
        work = Path(tmp)
        repo = work / "repo"
        from vmpool.export import export_zoo

        export_zoo(
            "delay", repo, options={"delay_ms": shape.delay_ms, "per_item_ms": shape.per_item_ms}
        )
        for name in args.only or list(SCENARIOS):
            print(
                f"running {name} ({len(times)} requests over {shape.duration_s:g} s) ...",
                flush=True,
            )
            rows.append(
                run_scenario(name, repo, work, shape, times, settle_s=20.0 if args.quick else 90.0)
            )
    peak = peak_sized(shape, len(times), PriceTable())
    print_table(rows, peak, shape)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"shape": shape.__dict__, "peak_sized": peak, "rows": rows}, indent=1)
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
